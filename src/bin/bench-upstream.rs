//! A minimal, fast HTTP/1.1 upstream for the load benchmark: reads each
//! request's body (if any) and answers `200 {"ok":true}`. Usage:
//! `bench-upstream --listen 127.0.0.1:9000`.
#![forbid(unsafe_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;

fn listen_address() -> Result<SocketAddr, String> {
    let args: Vec<String> = std::env::args().collect();
    match args.as_slice() {
        [_, flag, address] if flag == "--listen" => address
            .parse()
            .map_err(|_| format!("--listen: `{address}` is not IP:PORT")),
        _ => Err("usage: bench-upstream --listen 127.0.0.1:PORT".to_owned()),
    }
}

async fn answer(
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read the body as a real upstream would (and so that the connection
    // stays reusable whatever its size); a request without one costs nothing.
    if !request.body().is_end_stream() {
        let _ = request.into_body().collect().await;
    }
    let mut response = Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn main() {
    let address = match listen_address() {
        Ok(address) => address,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(address).await {
            Ok(listener) => listener,
            Err(err) => {
                eprintln!("error: --listen: cannot bind {address}: {err}");
                std::process::exit(1);
            }
        };
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(answer))
                    .await;
            });
        }
    });
}
