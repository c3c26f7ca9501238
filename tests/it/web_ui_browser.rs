//! The web UI in a real browser: headless Chromium (Debian's `chromium`
//! and `chromium-driver`, installed by `scripts/install-deps.sh test`)
//! driven over WebDriver (`fantoccini`) against the real binary on a real
//! Redis, set up with the real CLI. What people do: sign in, create a team
//! token and see it once, use it through the proxy, reload and find it
//! gone, regenerate (the old token gets 401), delete; a member of another
//! team sees no controls and a forged POST is refused; a POST without a
//! CSRF token changes nothing; an organization token pasted as a password
//! is refused; signing out ends the session cookie; the owners-only
//! organization section is invisible to others. Screenshots of the main
//! pages are saved on the way, into the test scratch folder
//! (`target/tmp/ui-screenshots/`); with `TOKENGATE_UPDATE_SCREENSHOTS=1`
//! into `docs/ui/` instead, the README's pictures (a test run never
//! changes a tracked file unless asked).
//!
//! Every wait is bounded; each test stops after two minutes at most.
//!
//! Without `chromium` and `chromedriver` on PATH the tests are skipped
//! with a loud message, unless `TOKENGATE_REQUIRE_BROWSER` is set: then
//! they fail. `scripts/test.sh` (the README's command, and CI's through
//! `.ci/run`) installs both and sets it, so CI never skips them.

use crate::harness::*;
use fantoccini::{Client, ClientBuilder, Locator};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokengate::store::redis::RedisStore;
use tokengate::store::{Owner, Store, Timestamp};

/// The longest any one step may wait.
const STEP: Duration = Duration::from_secs(15);
/// The longest a whole test may take.
const WHOLE: Duration = Duration::from_secs(120);

const OWNER_PASSWORD: &str = "owner password 1";
const MEMBER_PASSWORD: &str = "member password 2";

/// Set (to anything) to make a missing browser fail the tests instead of
/// skipping them.
const REQUIRE_BROWSER: &str = "TOKENGATE_REQUIRE_BROWSER";

/// `name`'s path when it is an executable file in a PATH directory.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| {
            use std::os::unix::fs::PermissionsExt;
            path.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Chromium's path when it and chromedriver are installed. Otherwise
/// `None` after a loud message on stderr, or a failure when
/// [`REQUIRE_BROWSER`] is set.
fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    let chromium = on_path("chromium").or_else(|| on_path("chromium-browser"));
    let driver = on_path("chromedriver");
    if let (Some(chromium), Some(_)) = (&chromium, &driver) {
        return Some(chromium.clone());
    }
    let missing: Vec<&str> = [
        ("chromium", chromium.is_none()),
        ("chromedriver", driver.is_none()),
    ]
    .into_iter()
    .filter_map(|(name, missing)| missing.then_some(name))
    .collect();
    let why = format!(
        "{test}: {} not on PATH (Debian packages chromium and chromium-driver; \
         run scripts/install-deps.sh test as root)",
        missing.join(" and ")
    );
    assert!(
        std::env::var_os(REQUIRE_BROWSER).is_none(),
        "{why}; {REQUIRE_BROWSER} is set"
    );
    eprintln!();
    eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    eprintln!("!!! SKIPPED: the web UI browser test did NOT run.");
    eprintln!("!!! {why}");
    eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    None
}

/// Runs `test` within [`WHOLE`].
async fn bounded<F: std::future::Future<Output = ()>>(test: F) {
    tokio::time::timeout(WHOLE, test)
        .await
        .expect("the browser test took longer than two minutes");
}

/// `chromedriver` on a free 127.0.0.1 port, and one Chromium session with a
/// fresh profile. [`Browser::quit`] ends the session; on drop (a failed
/// test) chromedriver's process group, Chromium with it, is killed, so no
/// browser outlives its test.
struct Browser {
    client: Client,
    driver: Killed,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.0.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
    }
}

impl Browser {
    async fn start(chromium: &Path) -> Browser {
        let port = free_port();
        let driver = Killed(
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                // A group of its own, which the Chromium it starts joins.
                .process_group(0)
                // The viewer's time zone: the pages show times in it.
                .env("TZ", "Europe/Berlin")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver must be installed (scripts/install-deps.sh test)"),
        );
        let deadline = std::time::Instant::now() + STEP;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "chromedriver did not listen"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,1000",
                    "--disable-crash-reporter", "--disable-breakpad",
                    "--lang=en-US",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        capabilities.insert(
            "timeouts".into(),
            serde_json::json!({"pageLoad": 20_000, "script": 10_000, "implicit": 0}),
        );
        let client = tokio::time::timeout(
            STEP * 2,
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities)
                .connect(&format!("http://127.0.0.1:{port}")),
        )
        .await
        .expect("Chromium did not start in time")
        .expect("Chromium did not start");
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Ends the WebDriver session: Chromium exits.
    async fn quit(&self) {
        let _ = tokio::time::timeout(STEP, self.client.clone().close()).await;
    }

    async fn goto(&self, url: &str) {
        tokio::time::timeout(STEP, self.client.goto(url))
            .await
            .expect("page load timed out")
            .unwrap();
    }

    /// Waits (at most [`STEP`]) for an element.
    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(STEP)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` on the page: {e}"))
    }

    /// Every element matching `css` now.
    async fn all(&self, css: &str) -> Vec<fantoccini::elements::Element> {
        self.client.find_all(Locator::Css(css)).await.unwrap()
    }

    /// The text of the page's `main` (asked again while the page is being
    /// replaced by the next one).
    async fn main_text(&self) -> String {
        let deadline = std::time::Instant::now() + STEP;
        loop {
            match self.find("main").await.text().await {
                Ok(text) => return text,
                Err(err) => assert!(
                    std::time::Instant::now() < deadline,
                    "the page's text cannot be read: {err}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks the button labelled `label` inside `scope` (a CSS selector).
    async fn click_button(&self, scope: &str, label: &str) {
        let xpath = format!("//*[self::button or self::a][normalize-space()='{label}']");
        let scope = self.find(scope).await;
        let button = scope
            .find(Locator::XPath(&format!(".{xpath}")))
            .await
            .unwrap_or_else(|e| panic!("no button `{label}`: {e}"));
        button.click().await.unwrap();
    }

    /// Waits until the main text contains `text`.
    async fn wait_for_text(&self, text: &str) -> String {
        let deadline = std::time::Instant::now() + STEP;
        loop {
            let main = self.main_text().await;
            if main.contains(text) {
                return main;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "`{text}` did not appear; the page says:\n{main}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn sign_in(&self, base: &str, username: &str, password: &str) {
        self.goto(&format!("{base}/_tokengate/ui/")).await;
        self.find("#username")
            .await
            .send_keys(username)
            .await
            .unwrap();
        self.find("#password")
            .await
            .send_keys(password)
            .await
            .unwrap();
        self.click_button("form", "Sign in").await;
    }

    /// The value of the session cookie.
    async fn session_cookie(&self) -> String {
        self.client
            .get_named_cookie("tg_session")
            .await
            .expect("a session cookie")
            .value()
            .to_owned()
    }

    /// Scrolls to the top of the page.
    async fn scroll_top(&self) {
        self.client
            .execute("window.scrollTo(0, 0);", vec![])
            .await
            .unwrap();
    }

    /// Saves a screenshot as `NAME.png` in [`screenshot_folder`], with any
    /// secret on the page replaced first (a token must never land in the
    /// repository).
    async fn screenshot(&self, name: &str) {
        self.assert_accessible(name).await;
        self.client
            .execute(
                "document.querySelectorAll('[data-secret]').forEach(function (el) { el.value = el.value.slice(0, 4) + '••••••••••••••••••••••••••••••••••••••••••••••••'; });",
                vec![],
            )
            .await
            .unwrap();
        let png = self.client.screenshot().await.unwrap();
        let path = screenshot_folder().join(format!("{name}.png"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, png).unwrap();
    }

    /// The accessibility basics of the page in the browser: a language, a
    /// title and a main heading; every visible form control named by a
    /// `<label>`, `aria-label` or `aria-labelledby`; every button and link
    /// with a name; no positive `tabindex` (focus follows the page's order);
    /// text darker than its background by WCAG's 4.5:1 where both colours
    /// are solid.
    async fn assert_accessible(&self, page: &str) {
        const CHECK: &str = r#"
            var problems = [];
            if (!document.documentElement.lang) problems.push('no lang on <html>');
            if (!document.title.trim()) problems.push('no <title>');
            if (!document.querySelector('h1')) problems.push('no <h1>');
            function visible(el) { return !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length); }
            function named(el) {
                if ((el.getAttribute('aria-label') || '').trim()) return true;
                if (el.getAttribute('aria-labelledby')) return true;
                if (el.labels && el.labels.length) return true;
                return false;
            }
            document.querySelectorAll('input, select, textarea').forEach(function (el) {
                if (el.type === 'hidden' || !visible(el)) return;
                if (el.type === 'submit' || el.type === 'button') {
                    if (!(el.value || '').trim() && !named(el)) problems.push('unnamed ' + el.type + ' input');
                    return;
                }
                if (!named(el)) problems.push('unlabelled ' + el.tagName.toLowerCase() + ' ' + (el.name || el.id));
            });
            document.querySelectorAll('button, a[href]').forEach(function (el) {
                if (!visible(el)) return;
                if (!(el.textContent || '').trim() && !named(el) && !el.title) problems.push('unnamed ' + el.tagName.toLowerCase());
            });
            document.querySelectorAll('[tabindex]').forEach(function (el) {
                if (parseInt(el.getAttribute('tabindex'), 10) > 0) problems.push('positive tabindex on ' + el.tagName.toLowerCase());
            });
            function rgb(text) {
                var m = text.match(/rgba?\(([\d.]+), ([\d.]+), ([\d.]+)(?:, ([\d.]+))?\)/);
                if (!m) return null;
                return { c: [+m[1], +m[2], +m[3]], a: m[4] === undefined ? 1 : +m[4] };
            }
            function luminance(c) {
                var l = c.map(function (v) { v = v / 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
                return 0.2126 * l[0] + 0.7152 * l[1] + 0.0722 * l[2];
            }
            function background(el) {
                for (; el; el = el.parentElement) {
                    var bg = rgb(getComputedStyle(el).backgroundColor);
                    if (bg && bg.a === 1) return bg.c;
                    if (bg && bg.a > 0) return null;
                    if (getComputedStyle(el).backgroundImage !== 'none') return null;
                }
                return [255, 255, 255];
            }
            document.querySelectorAll('body *').forEach(function (el) {
                if (!visible(el)) return;
                var own = Array.prototype.some.call(el.childNodes, function (n) { return n.nodeType === 3 && n.textContent.trim(); });
                if (!own) return;
                var fg = rgb(getComputedStyle(el).color), bg = background(el);
                if (!fg || fg.a !== 1 || !bg) return;
                var a = luminance(fg.c), b = luminance(bg);
                var ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
                if (ratio < 4.5) problems.push('contrast ' + ratio.toFixed(2) + ' of "' + el.textContent.trim().slice(0, 30) + '"');
            });
            return problems;
        "#;
        let problems = self.client.execute(CHECK, vec![]).await.unwrap();
        assert_eq!(
            problems,
            serde_json::json!([]),
            "{page}: accessibility problems"
        );
    }

    /// Confirms the open confirmation dialog, after checking its warning.
    async fn confirm(&self) -> String {
        let dialog = self.find("dialog#confirm[open]").await;
        let text = dialog.text().await.unwrap();
        assert!(
            text.contains("stops working on the very next request"),
            "{text}"
        );
        dialog
            .find(Locator::Css("[data-confirm-ok]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        text
    }

    /// The new secret shown on the page.
    async fn shown_secret(&self) -> String {
        self.find("[data-secret]")
            .await
            .prop("value")
            .await
            .unwrap()
            .expect("a value")
    }
}

/// A gateway process on Redis in front of a recording upstream, with an
/// organization set up by the CLI: `acme` with teams `dev` and `ops`;
/// alice (owner, member of dev), bob (member of dev) and carol (member of
/// ops), each with a password.
struct World {
    base: String,
    addr: SocketAddr,
    upstream: RecordingUpstream,
    store: RedisStore,
    dev: String,
    ops: String,
    _gateway: ServeProcess,
    _redis: RedisServer,
    _dir: tempfile::TempDir,
}

/// Runs the real CLI with `args`; its JSON answer.
fn cli(config: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    let config = config.display().to_string();
    all.extend(["--config", &config]);
    let output = tokengate(&all);
    assert!(
        output.status.success(),
        "tokengate {all:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// `tokengate user set-password NAME`, the password on standard input.
fn set_password(config: &Path, name: &str, password: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokengate"))
        .args(["user", "set-password", "--config"])
        .arg(config)
        .arg(name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "set-password {name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl World {
    async fn start() -> World {
        let redis = RedisServer::start();
        let upstream = RecordingUpstream::start().await;
        let dir = tempfile::tempdir().unwrap();
        let config: PathBuf = write_config(dir.path(), &upstream.url(), &redis.url(), "");
        let org = cli(&config, &["org", "create", "acme"]);
        let owners = org["owners_team_id"].as_str().unwrap().to_owned();
        let dev = cli(&config, &["team", "create", "--org", "acme", "dev"])["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let ops = cli(&config, &["team", "create", "--org", "acme", "ops"])["id"]
            .as_str()
            .unwrap()
            .to_owned();
        for (name, teams) in [
            ("alice", vec![owners.as_str(), dev.as_str()]),
            ("bob", vec![dev.as_str()]),
            ("carol", vec![ops.as_str()]),
        ] {
            let mut args = vec!["user", "create", "--org", "acme"];
            for team in &teams {
                args.extend(["--team", team]);
            }
            args.push(name);
            cli(&config, &args);
        }
        set_password(&config, "alice", OWNER_PASSWORD);
        set_password(&config, "bob", MEMBER_PASSWORD);
        set_password(&config, "carol", MEMBER_PASSWORD);
        let gateway = ServeProcess::start(&config, "gateway.log", "info").await;
        World {
            base: format!("http://{}", gateway.addr),
            addr: gateway.addr,
            upstream,
            store: RedisStore::new(&redis.url(), Duration::from_secs(5)).unwrap(),
            dev,
            ops,
            _gateway: gateway,
            _redis: redis,
            _dir: dir,
        }
    }

    /// A request through the proxy with `token`: its status.
    async fn proxied(&self, token: &str) -> u16 {
        send_raw(
            self.addr,
            RawRequest::new("GET", "/api/v2/workspaces").token(token),
        )
        .await
        .status
    }

    /// The team's legacy token id, if it has one.
    async fn team_token_id(&self, team_id: &str) -> Option<String> {
        tokengate::token::lifecycle::current(
            &self.store,
            &Owner::Team {
                org: "acme".into(),
                team_id: team_id.into(),
            },
        )
        .await
        .unwrap()
        .map(|c| c.token_id)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_signs_in_and_manages_team_and_organization_tokens() {
    let Some(chromium) =
        chromium_or_skip("an_owner_signs_in_and_manages_team_and_organization_tokens")
    else {
        return;
    };
    bounded(async {
        let world = World::start().await;
        let browser = Browser::start(&chromium).await;
        let base = &world.base;
        // Tokens the list shows besides the one made below: one expired.
        tokengate::token::lifecycle::issue_own(
            &world.store,
            Owner::Team {
                org: "acme".into(),
                team_id: world.ops.clone(),
            },
            TEST_SECRETS,
            None,
            Some(Timestamp::now().plus_millis(1)),
            Some("nightly backup".into()),
        )
        .await
        .unwrap();
        for description in ["CI pipeline", "release bot"] {
            tokengate::token::lifecycle::issue_own(
                &world.store,
                Owner::Team {
                    org: "acme".into(),
                    team_id: world.ops.clone(),
                },
                TEST_SECRETS,
                None,
                Some(Timestamp::now().plus_millis(20 * 86_400_000)),
                Some(description.into()),
            )
            .await
            .unwrap();
        }

        // Sign in.
        browser.goto(&format!("{base}/_tokengate/ui/")).await;
        browser.find("label[for=username]").await;
        browser.screenshot("sign-in").await;
        browser.sign_in(base, "alice", OWNER_PASSWORD).await;
        browser.wait_for_text("The teams of acme").await;
        browser.screenshot("teams").await;

        // Create the dev team's token and see it once.
        browser
            .find(&format!("a[href='/_tokengate/ui/teams/{}']", world.dev))
            .await
            .click()
            .await
            .unwrap();
        browser.wait_for_text("Team API Token").await;
        browser.wait_for_text("This team has no token").await;
        browser.find("#legacy-expires").await.select_by_value("90").await.unwrap();
        browser.click_button("#token", "Create a team token").await;
        let page = browser.wait_for_text("It will not be shown again").await;
        let first = browser.shown_secret().await;
        assert!(first.contains(".atlasv1."), "{first}");
        assert!(!page.contains(&first), "the secret is in an input, not text");
        assert!(
            !browser.client.current_url().await.unwrap().as_str().contains(&first),
            "no secret in the URL"
        );
        // Times in the viewer's zone (Europe/Berlin), UTC on hover.
        let time = browser.find("#token time").await;
        let shown = time.text().await.unwrap();
        let title = time.attr("title").await.unwrap().unwrap();
        assert!(title.ends_with("UTC"), "{title}");
        assert!(!shown.ends_with("UTC") && shown != title, "{shown} / {title}");
        browser.screenshot("team-token-created").await;

        // It works through the proxy.
        let seen = world.upstream.count();
        assert_eq!(world.proxied(&first).await, 200);
        assert_eq!(world.upstream.count(), seen + 1);

        // A reload, and the back button, never show it again.
        browser.client.refresh().await.unwrap();
        browser.wait_for_text("This team has a token").await;
        assert!(browser.all("[data-secret]").await.is_empty());
        assert!(!browser.client.source().await.unwrap().contains(&first));
        browser.goto(&format!("{base}/_tokengate/ui/teams")).await;
        browser.client.back().await.unwrap();
        browser.wait_for_text("This team has a token").await;
        assert!(!browser.client.source().await.unwrap().contains(&first));
        browser.scroll_top().await;
        browser.screenshot("team").await;

        // Regenerate: asked first; the old token stops working at once.
        browser.click_button("#token", "Regenerate").await;
        browser.screenshot("confirm-regenerate").await;
        browser.confirm().await;
        browser.wait_for_text("The previous token stopped working").await;
        let second = browser.shown_secret().await;
        assert_ne!(second, first);
        assert_eq!(world.proxied(&first).await, 401, "the old token");
        assert_eq!(world.proxied(&second).await, 200, "the new token");

        // Delete: asked first; the token stops working at once.
        browser.client.refresh().await.unwrap();
        browser.click_button("#token", "Delete").await;
        browser.confirm().await;
        browser.wait_for_text("The team token was deleted").await;
        browser.wait_for_text("This team has no token").await;
        assert_eq!(world.proxied(&second).await, 401);
        assert_eq!(world.team_token_id(&world.dev).await, None);

        // A POST without its CSRF token changes nothing.
        browser
            .client
            .execute(
                "var form = document.querySelector('form.create'); form.querySelector('[name=csrf]').remove(); form.submit();",
                vec![],
            )
            .await
            .unwrap();
        browser.wait_for_text("could not be verified").await;
        assert!(browser.main_text().await.contains("Nothing was changed"));
        assert_eq!(world.team_token_id(&world.dev).await, None);

        // Settings → API tokens: the organization's team tokens, expired
        // ones marked, searched and filtered as the API does.
        browser.goto(&format!("{base}/_tokengate/ui/tokens")).await;
        let list = browser.wait_for_text("Team tokens").await;
        assert!(list.contains("nightly backup") && list.contains("CI pipeline"), "{list}");
        assert!(list.contains("Expired"), "{list}");
        browser.screenshot("api-tokens").await;
        browser
            .find("#status")
            .await
            .select_by_value("expired")
            .await
            .unwrap();
        browser.click_button("form.filters", "Apply").await;
        let expired = browser.wait_for_text("Showing 1–1 of 1").await;
        assert!(expired.contains("nightly backup") && !expired.contains("CI pipeline"), "{expired}");

        // The organization token, for owners.
        browser.click_button("nav.tabs", "Organization token").await;
        browser.wait_for_text("Organization Token").await;
        browser.click_button("#org-token", "Create an organization token").await;
        browser.wait_for_text("It will not be shown again").await;
        let org_token = browser.shown_secret().await;
        browser.screenshot("organization-token").await;
        browser.client.refresh().await.unwrap();
        browser.click_button("#org-token", "Regenerate").await;
        browser.confirm().await;
        browser.wait_for_text("The previous token stopped working").await;
        let org_token_2 = browser.shown_secret().await;
        assert_ne!(org_token, org_token_2);
        // The owner's own audit trail names them.
        let alice = world.store.users_named("alice").await.unwrap().remove(0);
        let events = world.store.audit_events(None, 1000).await.unwrap();
        for action in ["sign_in", "generate", "regenerate", "revoke"] {
            assert!(
                events.iter().any(|e| e.action == action && e.actor == alice.id),
                "no {action} by alice in {events:?}"
            );
        }

        // Sign out: the cookie is dead everywhere, even sent by hand.
        browser.goto(&format!("{base}/_tokengate/ui/teams")).await;
        let cookie = browser.session_cookie().await;
        browser.click_button("header", "Sign out").await;
        browser.wait_for_text("You are signed out").await;
        let cookie = format!("tg_session={cookie}");
        let replay = send_raw(
            world.addr,
            RawRequest::new("GET", "/_tokengate/ui/teams").headers(&[("Cookie", &cookie)]),
        )
        .await;
        assert_eq!(replay.status, 303, "{}", replay.body);
        assert!(replay.header("location").unwrap().contains("session-ended"));
        browser.goto(&format!("{base}/_tokengate/ui/teams")).await;
        browser.wait_for_text("Sign in to tokengate").await;
        browser.quit().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn others_see_no_controls_and_tokens_and_forged_forms_are_refused() {
    let Some(chromium) =
        chromium_or_skip("others_see_no_controls_and_tokens_and_forged_forms_are_refused")
    else {
        return;
    };
    bounded(async {
        let world = World::start().await;
        let browser = Browser::start(&chromium).await;
        let base = &world.base;
        let dev_token = tokengate::token::lifecycle::issue(
            &world.store,
            Owner::Team {
                org: "acme".into(),
                team_id: world.dev.clone(),
            },
            TEST_SECRETS,
            None,
            None,
        )
        .await
        .unwrap();
        let org_token = tokengate::token::lifecycle::issue(
            &world.store,
            Owner::Org { org: "acme".into() },
            TEST_SECRETS,
            None,
            None,
        )
        .await
        .unwrap()
        .token
        .secret_token;

        // An organization token pasted as a password is refused.
        browser.sign_in(base, "alice", &org_token).await;
        let refused = browser
            .wait_for_text("Service accounts cannot be used interactively")
            .await;
        assert!(!refused.contains(&org_token));
        assert!(!browser.client.source().await.unwrap().contains(&org_token));
        browser.screenshot("sign-in-refused").await;
        // ...and a wrong password.
        browser.sign_in(base, "carol", "not her password").await;
        browser.wait_for_text("not correct").await;

        // carol, of ops, sees dev's page without its controls.
        browser.sign_in(base, "carol", MEMBER_PASSWORD).await;
        browser.wait_for_text("The teams of acme").await;
        browser
            .goto(&format!("{base}/_tokengate/ui/teams/{}", world.dev))
            .await;
        let page = browser.wait_for_text("Team API Token").await;
        assert!(page.contains("not manage its tokens"), "{page}");
        for label in ["Regenerate", "Delete", "Create a team token"] {
            assert!(!page.contains(label), "{label} shown to carol: {page}");
        }
        assert!(!page.contains(&dev_token.credential.token_id), "{page}");
        browser.screenshot("team-view-only").await;

        // A forged POST (with carol's own valid CSRF token) is refused.
        browser
            .client
            .execute(
                "var csrf = document.querySelector('[name=csrf]').value;\
                 var form = document.createElement('form');\
                 form.method = 'post'; form.action = arguments[0];\
                 var field = document.createElement('input'); field.type = 'hidden'; field.name = 'csrf'; field.value = csrf; form.appendChild(field);\
                 var yes = document.createElement('input'); yes.type = 'hidden'; yes.name = 'confirmed'; yes.value = 'yes'; form.appendChild(yes);\
                 document.body.appendChild(form); form.submit();",
                vec![serde_json::json!(format!("/_tokengate/ui/teams/{}/token", world.dev))],
            )
            .await
            .unwrap();
        browser.wait_for_text("Not found").await;
        assert_eq!(
            world.team_token_id(&world.dev).await,
            Some(dev_token.credential.token_id.clone()),
            "dev's token is unchanged"
        );
        assert_eq!(world.proxied(&dev_token.token.secret_token).await, 200);
        let events = world.store.audit_events(None, 1000).await.unwrap();
        assert!(
            events.iter().any(|e| e.action == "generate_refused"
                && e.target == format!("team:{}", world.dev)),
            "{events:?}"
        );

        // The owners-only organization section is invisible, and 404.
        browser.goto(&format!("{base}/_tokengate/ui/tokens")).await;
        let tokens = browser.wait_for_text("Team tokens").await;
        assert!(!tokens.contains("Organization token"), "{tokens}");
        assert!(browser.all("a[href='/_tokengate/ui/tokens/organization']").await.is_empty());
        browser
            .goto(&format!("{base}/_tokengate/ui/tokens/organization"))
            .await;
        browser.wait_for_text("Not found").await;

        // carol manages her own team's token.
        browser
            .goto(&format!("{base}/_tokengate/ui/teams/{}", world.ops))
            .await;
        browser.click_button("#token", "Create a team token").await;
        browser.wait_for_text("It will not be shown again").await;
        let ops_token = browser.shown_secret().await;
        assert_eq!(world.proxied(&ops_token).await, 200);
        browser.quit().await;
    })
    .await;
}

/// Where screenshots go: `docs/ui/` (the README's pictures) when
/// `TOKENGATE_UPDATE_SCREENSHOTS=1`, else the test scratch folder, so that
/// an ordinary test run leaves the work tree as it found it.
fn screenshot_folder() -> std::path::PathBuf {
    if std::env::var("TOKENGATE_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        repo_path("docs/ui")
    } else {
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots")
    }
}
