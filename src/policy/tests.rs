//! Unit tests of the rule language: loading errors (rule and field named),
//! evaluation semantics (order, first match, default, shadow, body reads).

use super::*;
use crate::canonical::canonicalize;

fn load(rules: &str) -> Policy {
    Policy::from_yaml(&format!("default: deny\nrules:\n{rules}"))
        .unwrap_or_else(|e| panic!("{e:?}"))
}

fn problems(yaml: &str) -> Vec<(String, String)> {
    Policy::from_yaml(yaml)
        .expect_err("the policy must not load")
        .into_iter()
        .map(|p| (p.key, p.message))
        .collect()
}

struct Req {
    caller: Caller,
    org: Option<&'static str>,
    team: Option<&'static str>,
    method: Method,
    path: &'static str,
}

fn req(caller: Caller, method: Method, path: &'static str) -> Req {
    Req {
        caller,
        org: (caller != Caller::Anonymous).then_some("acme"),
        team: (caller == Caller::Team).then_some("team-a"),
        method,
        path,
    }
}

fn with_facts<T>(r: &Req, judge: impl FnOnce(&Facts<'_>) -> T) -> T {
    let (path, query) = match r.path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (r.path, None),
    };
    let path = canonicalize(path).unwrap();
    judge(&Facts {
        caller: r.caller,
        org: r.org,
        team_id: r.team,
        user_id: None,
        method: &r.method,
        path: &path,
        query,
    })
}

/// (decision, rule id, shadow ids) with the body read; `bad_request` when
/// a rule needs JSON and the body is not JSON.
fn decide(policy: &Policy, r: &Req, body: &[u8]) -> (String, String, Vec<String>) {
    with_facts(r, |facts| match policy.evaluate_body(facts, body) {
        Ok(v) => (
            v.effect.as_str().into(),
            v.rule_id().into(),
            v.shadow.iter().map(|r| r.id.to_string()).collect(),
        ),
        Err(e) => ("bad_request".into(), e.rule_id.to_string(), vec![]),
    })
}

fn needs_body(policy: &Policy, r: &Req) -> bool {
    with_facts(r, |facts| {
        matches!(policy.evaluate(facts, Body::NotRead), Outcome::NeedsBody)
    })
}

#[test]
fn every_load_problem_names_the_rule_and_field() {
    let found = problems(
        "default: deny\nrules:\n\
         - { id: a, effect: allow, principals: [robot], methods: [GET, FETCH, get], paths: [api/x], colour: red }\n\
         - { id: a, effect: maybe, principals: [team], methods: [GET], paths: [\"/x/{}\"] }\n\
         - { id: c, effect: deny, principals: [anonymous], methods: [GET], paths: [/x], when: [{ field: team_id, equals: t }] }\n\
         - { id: d, effect: deny, principals: [team], methods: [GET, DELETE], paths: [/x], when: [{ body: /a, exists: true }] }\n\
         - { id: e, effect: deny, principals: [team], methods: [POST], paths: [/x], when: [{ field: org, in: [] }], status: 500, mode: loud }\n\
         - { id: f, effect: allow, principals: [team], methods: [POST], paths: [/x], status: 404, when: [{ body: a, equals: 1 }] }\n",
    );
    let expect = [
        ("rules[0] (a).colour", "unknown key"),
        ("rules[0] (a).principals", "`robot` is unknown"),
        ("rules[0] (a).methods", "`FETCH` is unknown"),
        ("rules[0] (a).methods", "`get` is unknown"),
        ("rules[0] (a).paths[0]", "must start with `/`"),
        ("rules[1] (a).id", "duplicate id `a`"),
        ("rules[1] (a).effect", "not an effect"),
        ("rules[1] (a).paths[0]", "needs a name"),
        (
            "rules[2] (c).when[0]",
            "never set for this rule's principals",
        ),
        ("rules[3] (d).when", "every listed method has no body"),
        ("rules[4] (e).when[0]", "`in: []` can never match"),
        ("rules[4] (e).status", "500 is not allowed"),
        ("rules[4] (e).mode", "`loud` is unknown"),
        ("rules[5] (f).when[0]", "must be empty or start with `/`"),
        ("rules[5] (f).status", "only deny rules have a status"),
    ];
    for (key, fragment) in expect {
        assert!(
            found.iter().any(|(k, m)| k == key && m.contains(fragment)),
            "no `{key}: …{fragment}…` in {found:#?}"
        );
    }
    assert_eq!(found.len(), expect.len(), "{found:#?}");
    assert_eq!(problems("rules: []\n")[0].0, "default");
}

#[test]
fn equals_null_is_a_test_for_null_not_a_missing_test() {
    let p = load(
        "  - { id: null-cv, effect: deny, principals: [org], methods: [PATCH], paths: [/api/v2/workspaces/x], when: [{ body: /data/cv, equals: null }] }\n\
         \x20 - { id: rest, effect: allow, principals: [org], methods: [\"*\"], paths: [/**] }\n",
    );
    let r = req(Caller::Org, Method::PATCH, "/api/v2/workspaces/x");
    assert_eq!(decide(&p, &r, br#"{"data":{"cv":null}}"#).1, "null-cv");
    assert_eq!(decide(&p, &r, br#"{"data":{"cv":1}}"#).1, "rest");
    assert_eq!(
        decide(&p, &r, br#"{"data":{}}"#).1,
        "rest",
        "absent is not null"
    );
    let missing = problems(
        "default: deny\nrules:\n- { id: x, effect: deny, principals: [org], methods: [POST], paths: [/x], when: [{ body: /a }] }\n",
    );
    assert!(missing[0].1.contains("exactly one test"), "{missing:?}");
}

#[test]
fn rules_in_order_first_match_decides_then_default() {
    let p = load(
        "  - { id: deny-apply, effect: deny, principals: [org], methods: [POST], paths: [\"/api/v2/runs/*/actions/apply\"] }\n\
         \x20 - { id: allow-api, effect: allow, principals: [org, team], methods: [\"*\"], paths: [/api/**] }\n\
         \x20 - { id: deny-api-late, effect: deny, principals: [team], methods: [GET], paths: [/api/**] }\n",
    );
    let apply = req(Caller::Org, Method::POST, "/api/v2/runs/r/actions/APPLY");
    assert_eq!(decide(&p, &apply, b"").1, "deny-apply");
    let team_apply = req(Caller::Team, Method::POST, "/api/v2/runs/r/actions/apply");
    assert_eq!(decide(&p, &team_apply, b"").0, "allow");
    let team_get = req(Caller::Team, Method::GET, "/api/v2/x");
    assert_eq!(
        decide(&p, &team_get, b"").1,
        "allow-api",
        "an earlier allow wins"
    );
    let outside = req(Caller::Team, Method::GET, "/app");
    assert_eq!(
        decide(&p, &outside, b""),
        ("deny".into(), "default".into(), vec![])
    );
}

#[test]
fn team_and_org_scoped_conditions() {
    let p = load(
        "  - { id: team-a-only, effect: allow, principals: [team], methods: [GET], paths: [/api/**], when: [{ field: team_id, in: [team-a] }] }\n\
         \x20 - { id: not-globex, effect: allow, principals: [org], methods: [GET], paths: [/api/**], when: [{ not: { field: org, equals: globex } }] }\n",
    );
    let mut r = req(Caller::Team, Method::GET, "/api/x");
    assert_eq!(decide(&p, &r, b"").1, "team-a-only");
    r.team = Some("team-b");
    assert_eq!(decide(&p, &r, b"").1, "default");
    let mut r = req(Caller::Org, Method::GET, "/api/x");
    assert_eq!(decide(&p, &r, b"").1, "not-globex");
    r.org = Some("globex");
    assert_eq!(decide(&p, &r, b"").1, "default");
}

#[test]
fn the_body_is_needed_only_when_a_rule_that_can_match_needs_it() {
    let p = load(
        "  - { id: auto-apply, effect: deny, principals: [org], methods: [PATCH], paths: [\"/api/v2/workspaces/{id}\"], when: [{ field: org, equals: acme }, { body: /data/attributes/auto-apply, equals: true }] }\n\
         \x20 - { id: api, effect: allow, principals: [org, team], methods: [\"*\"], paths: [/api/**] }\n",
    );
    let patch = req(Caller::Org, Method::PATCH, "/api/v2/workspaces/ws-1");
    assert!(needs_body(&p, &patch));
    assert!(!needs_body(
        &p,
        &req(Caller::Team, Method::PATCH, "/api/v2/workspaces/ws-1")
    ));
    assert!(!needs_body(
        &p,
        &req(Caller::Org, Method::POST, "/api/v2/workspaces/ws-1")
    ));
    let mut other_org = req(Caller::Org, Method::PATCH, "/api/v2/workspaces/ws-1");
    other_org.org = Some("globex");
    assert!(
        !needs_body(&p, &other_org),
        "a failing caller condition spares the body"
    );
    let on = br#"{"data":{"type":"workspaces","attributes":{"auto-apply":true}}}"#;
    assert_eq!(decide(&p, &patch, on).1, "auto-apply");
    assert_eq!(
        decide(
            &p,
            &patch,
            br#"{"data":{"attributes":{"auto-apply":"true"}}}"#
        )
        .1,
        "api"
    );
    assert_eq!(
        decide(&p, &patch, b"").1,
        "api",
        "an empty body has no auto-apply"
    );
    assert_eq!(decide(&p, &patch, b"{\"data\":").0, "bad_request");
    assert_eq!(decide(&p, &patch, b"auto-apply=true").1, "auto-apply");
}

#[test]
fn shadow_rules_never_decide_and_never_refuse_a_body() {
    let p = load(
        "  - { id: watch-json, effect: deny, principals: [team], methods: [POST], paths: [/api/**], when: [{ body: /x, exists: true }], mode: shadow }\n\
         \x20 - { id: watch-all, effect: allow, principals: [team], methods: [\"*\"], paths: [/**], mode: shadow }\n\
         \x20 - { id: api, effect: deny, principals: [team], methods: [POST], paths: [/api/**] }\n\
         \x20 - { id: after, effect: deny, principals: [team], methods: [\"*\"], paths: [/**], mode: shadow }\n",
    );
    let r = req(Caller::Team, Method::POST, "/api/x");
    assert_eq!(
        decide(&p, &r, br#"{"x":1}"#),
        (
            "deny".into(),
            "api".into(),
            vec!["watch-json".into(), "watch-all".into()]
        )
    );
    assert_eq!(
        decide(&p, &r, b"not json"),
        ("deny".into(), "api".into(), vec!["watch-all".into()]),
        "a shadow rule skips a body that is not JSON instead of refusing it"
    );
    let get = req(Caller::Team, Method::GET, "/app");
    assert_eq!(
        decide(&p, &get, b""),
        (
            "deny".into(),
            "default".into(),
            vec!["watch-all".into(), "after".into()]
        )
    );
}

#[test]
fn any_and_all_combine_conditions_and_refuse_empty_lists() {
    let p = load(
        "  - id: on\n    effect: deny\n    principals: [org]\n    methods: [PATCH]\n    paths: [/w]\n    when:\n\
         \x20     - any:\n\
         \x20         - all: [{ body: /a, exists: true }, { not: { body: /a, in: [false, null] } }]\n\
         \x20         - { body: /b, equals: true }\n\
         \x20 - { id: rest, effect: allow, principals: [org], methods: [\"*\"], paths: [/**] }\n",
    );
    let r = req(Caller::Org, Method::PATCH, "/w");
    for (body, rule) in [
        (&br#"{"a":true}"#[..], "on"),
        (br#"{"a":"yes"}"#, "on"),
        (br#"{"a":false}"#, "rest"),
        (br#"{"a":null}"#, "rest"),
        (br#"{"b":true}"#, "on"),
        (br#"{"c":true}"#, "rest"),
    ] {
        assert_eq!(
            decide(&p, &r, body).1,
            rule,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let found = problems(
        "default: deny\nrules:\n\
         - { id: a, effect: deny, principals: [org], methods: [POST], paths: [/x], when: [{ any: [] }] }\n\
         - { id: b, effect: deny, principals: [org], methods: [POST], paths: [/x], when: [{ all: [] }] }\n\
         - { id: c, effect: deny, principals: [org], methods: [POST], paths: [/x], when: [{ any: [{ body: /a, exists: true }], not: { body: /a, exists: true } }] }\n\
         - { id: d, effect: deny, principals: [org], methods: [POST], paths: [/x], when: [{ all: [{ body: /a }] }] }\n\
         - { id: e, effect: deny, principals: [org], methods: [POST], paths: [/x], when: [{ any: [{ field: team_id, exists: true }] }] }\n",
    );
    let expect = [
        ("rules[0] (a).when[0]", "`any: []` can never match"),
        ("rules[1] (b).when[0]", "`all: []` says nothing"),
        ("rules[2] (c).when[0]", "must each stand alone"),
        ("rules[3] (d).when[0]", "all[0]: needs exactly one test"),
        (
            "rules[4] (e).when[0]",
            "any[0]: field `team_id` is never set",
        ),
    ];
    for (key, fragment) in expect {
        assert!(
            found.iter().any(|(k, m)| k == key && m.contains(fragment)),
            "no `{key}: …{fragment}…` in {found:#?}"
        );
    }
    assert_eq!(found.len(), expect.len(), "{found:#?}");
}

#[test]
fn the_default_policy_loads_without_lint_warnings() {
    let p = Policy::from_yaml(include_str!("../../config/policy.yaml")).unwrap();
    assert_eq!(p.default, Effect::Deny);
    assert_eq!(p.lint(), Vec::new());
    // The one shadow rule is the VCS-repository watch (docs/SECURITY.md).
    let shadow: Vec<&str> = p
        .rules
        .iter()
        .filter(|r| r.mode == Mode::Shadow)
        .map(|r| &*r.id)
        .collect();
    assert_eq!(shadow, ["org-vcs-repo-change"]);
    for rule in p.rules.iter().filter(|r| r.effect == Effect::Deny) {
        assert!(rule.message.is_some(), "deny rule `{}` says why", rule.id);
    }
}

#[test]
fn nan_and_infinity_are_refused_not_read_as_null() {
    for test in [
        "equals: .nan",
        "equals: .inf",
        "in: [1, -.inf]",
        "equals: [.NaN]",
    ] {
        let found = problems(&format!(
            "default: deny\nrules:\n  - {{ id: a, effect: deny, principals: [org], methods: [POST], paths: [/a], when: [{{ body: /x, {test} }}] }}\n"
        ));
        assert_eq!(found.len(), 1, "{test}: {found:?}");
        assert!(
            found[0].0.starts_with("rules[0].when[0]."),
            "{test}: {found:?}"
        );
        assert!(found[0].1.contains("no JSON value"), "{test}: {found:?}");
    }
}

#[test]
fn rule_ids_that_name_other_deciders_are_reserved() {
    // `default` is how explanations, `policy test` and the metrics name the
    // default decision; `none` and `token-api` are metric labels too.
    for id in ["default", "none", "token-api"] {
        let found = problems(&format!(
            "default: deny\nrules:\n  - {{ id: {id}, effect: allow, principals: [org], methods: [GET], paths: [/a] }}\n"
        ));
        assert_eq!(found.len(), 1, "{id}: {found:?}");
        assert_eq!(found[0].0, format!("rules[0] ({id}).id"), "{found:?}");
        assert!(found[0].1.contains("reserved"), "{found:?}");
    }
}

#[test]
fn denial_status_sets_the_status_of_the_default_and_of_rules_without_one() {
    let yaml = |status: &str| {
        format!(
            "default: deny\n{status}rules:\n\
             \x20 - {{ id: no-runs, effect: deny, principals: [org], methods: [POST], paths: [/api/v2/runs] }}\n\
             \x20 - {{ id: own-403, effect: deny, principals: [org], methods: [POST], paths: [/api/v2/x], status: 403 }}\n"
        )
    };
    let judge = |policy: &Policy, caller: Caller, path: &'static str| {
        let r = req(caller, Method::POST, path);
        with_facts(&r, |facts| {
            let judgement = decide::decide(policy, facts, None);
            (
                judgement.status().as_u16(),
                judgement.rule_label().to_string(),
            )
        })
    };
    let tfe = Policy::from_yaml(&yaml("denial_status: 404\n")).unwrap();
    assert_eq!(tfe.denial_status, StatusCode::NOT_FOUND);
    assert_eq!(
        judge(&tfe, Caller::Org, "/api/v2/runs"),
        (404, "no-runs".into())
    );
    assert_eq!(
        judge(&tfe, Caller::Org, "/api/v2/y"),
        (404, "default".into())
    );
    assert_eq!(
        judge(&tfe, Caller::Org, "/api/v2/x"),
        (403, "own-403".into()),
        "a rule's own status wins"
    );
    assert_eq!(
        judge(&tfe, Caller::Anonymous, "/api/v2/y"),
        (401, "default".into()),
        "an anonymous caller is still asked for credentials"
    );
    let default = Policy::from_yaml(&yaml("")).unwrap();
    assert_eq!(
        judge(&default, Caller::Org, "/api/v2/runs"),
        (403, "no-runs".into())
    );
    assert_eq!(
        judge(&default, Caller::Org, "/api/v2/y"),
        (403, "default".into())
    );
    let found = problems(&yaml("denial_status: 418\n"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "denial_status");
    assert!(
        found[0].1.contains("use 403") && found[0].1.contains("404"),
        "{found:?}"
    );
}

#[test]
fn attributes_rails_would_wrap_from_the_top_level_pass_the_same_rules() {
    let p = load(
        "  - { id: no-auto-apply, effect: deny, principals: [org], methods: [PATCH], paths: [/w], when: [{ body: /data/attributes/auto-apply, in: [true, \"1\"] }] }\n\
         \x20 - { id: rest, effect: allow, principals: [org], methods: [\"*\"], paths: [/**] }\n",
    );
    let r = req(Caller::Org, Method::PATCH, "/w");
    for (body, rule) in [
        (r#"{"auto_apply":true}"#, "no-auto-apply"),
        (r#"{"autoApply":true}"#, "no-auto-apply"),
        (r#"{"workspace":{"auto-apply":true}}"#, "no-auto-apply"),
        (
            r#"{"data":{"attributes":{"auto-apply":false}},"auto_apply":"1"}"#,
            "no-auto-apply",
        ),
        (r#"{"data":{"attributes":{"auto-apply":false}}}"#, "rest"),
        (r#"{"reason":"maintenance"}"#, "rest"),
        (r#"{"workspace":{"auto-apply":false}}"#, "rest"),
        ("null", "rest"),
    ] {
        let value = super::parse_body(body.as_bytes()).unwrap();
        let decided = with_facts(&r, |facts| {
            super::decide::decide(&p, facts, value.as_ref())
                .rule_label()
                .to_string()
        });
        assert_eq!(decided, rule, "{body}");
    }
}

#[test]
fn query_conditions_read_the_parameter_as_rack_does() {
    let p = load(
        "  - { id: state-include, effect: deny, principals: [team], methods: [GET], paths: [/api/**], when: [{ query: include, contains: [outputs, current-state-version] }] }\n\
         \x20 - { id: any-include, effect: deny, principals: [team], methods: [GET], paths: [/api/x], when: [{ query: include, exists: true }] }\n\
         \x20 - { id: org-include, effect: deny, principals: [team], methods: [GET], paths: [/api/y], when: [{ query: include, equals: organization }] }\n\
         \x20 - { id: in-include, effect: deny, principals: [team], methods: [GET], paths: [/api/z], when: [{ query: include, in: [a, b] }] }\n\
         \x20 - { id: rest, effect: allow, principals: [team], methods: [\"*\"], paths: [/**] }\n",
    );
    let rule = |path: &'static str| decide(&p, &req(Caller::Team, Method::GET, path), b"").1;
    // Every spelling Rails reads as a state or outputs include.
    for path in [
        "/api/v2/w?include=outputs",
        "/api/v2/w?include=current-state-version,outputs",
        "/api/v2/w?include=current_state_version",
        "/api/v2/w?include=currentStateVersion",
        "/api/v2/w?include=CURRENT-STATE-VERSION",
        "/api/v2/w?include=organization%2Coutputs",
        "/api/v2/w?include=organization,+outputs+",
        "/api/v2/w?include=current-state-version.outputs",
        "/api/v2/w?include=current-run.workspace.outputs",
        "/api/v2/w?%69nclude=outputs",
        "/api/v2/w?include=organization&include=outputs",
        "/api/v2/w?include[]=outputs",
        "/api/v2/w?include=organization&include[]=outputs",
        "/api/v2/w?include%5Bx%5D=outputs",
    ] {
        assert_eq!(rule(path), "state-include", "{path}");
    }
    // What the upstream does not read as one.
    for path in [
        "/api/v2/w",
        "/api/v2/w?include=organization",
        "/api/v2/w?include=outputs&include=organization",
        "/api/v2/w?include=outputsx,current-state-versions",
        "/api/v2/w?includes=outputs",
        "/api/v2/w?page[include]=outputs",
        "/api/v2/w?filter[name]=outputs",
        "/api/v2/w?q=include%3Doutputs",
    ] {
        assert_eq!(rule(path), "rest", "{path}");
    }
    assert_eq!(rule("/api/x?include="), "any-include");
    assert_eq!(rule("/api/x?include[]=a"), "any-include");
    assert_eq!(rule("/api/x?page[size]=1"), "rest");
    assert_eq!(rule("/api/y?include=organization"), "org-include");
    assert_eq!(rule("/api/y?include=organization&include=a"), "rest");
    assert_eq!(
        rule("/api/y?include[]=organization"),
        "rest",
        "not a string"
    );
    assert_eq!(rule("/api/z?include=b"), "in-include");
    assert_eq!(rule("/api/z?include=a,b"), "rest");
    // A query condition never needs the body.
    assert!(!needs_body(
        &p,
        &req(Caller::Team, Method::GET, "/api/v2/w?include=x")
    ));
    let text = p.rules[0].when[0].describe();
    assert_eq!(
        text,
        "query include contains any of [outputs, current_state_version]"
    );
}

#[test]
fn query_conditions_are_validated_naming_the_key() {
    let found = problems(
        "default: deny\nrules:\n\
         - { id: a, effect: deny, principals: [team], methods: [GET], paths: [/x], when: [{ query: \"include]\", exists: true }] }\n\
         - { id: b, effect: deny, principals: [team], methods: [GET], paths: [/x], when: [{ query: include, contains: [outputs, a.b] }] }\n\
         - { id: c, effect: deny, principals: [team], methods: [GET], paths: [/x], when: [{ query: include, equals: 1 }] }\n\
         - { id: d, effect: deny, principals: [team], methods: [GET], paths: [/x], when: [{ query: include }] }\n\
         - { id: e, effect: deny, principals: [team], methods: [GET], paths: [/x], when: [{ body: /a, contains: x }] }\n\
         - { id: f, effect: deny, principals: [team], methods: [GET], paths: [/x], when: [{ query: include, field: org, exists: true }] }\n\
         - { id: g, effect: deny, principals: [team], methods: [GET], paths: [/x], when: [{ not: { query: include, contains: [] } }] }\n\
         - { id: h, effect: deny, principals: [team], methods: [GET], paths: [/x], when: [{ query: _method, exists: true }] }\n\
         - { id: i, effect: deny, principals: [team], methods: [GET], paths: [/x], when: [{ query: include, in: [a, 2] }] }\n\
         - { id: j, effect: deny, principals: [team], methods: [GET], paths: [/x], when: [{ query: include, contains: [\"a,b\"] }] }\n",
    );
    let expect = [
        (
            "rules[0] (a).when[0]",
            "query parameter `include]` is not a name",
        ),
        ("rules[1] (b).when[0]", "\"a.b\" is not one"),
        ("rules[2] (c).when[0]", "a query value is a string"),
        ("rules[3] (d).when[0]", "needs exactly one test"),
        ("rules[4] (e).when[0]", "use it with `query: include`"),
        (
            "rules[5] (f).when[0]",
            "use one of `body`, `field` or `query`",
        ),
        ("rules[6] (g).when[0]", "`contains: []` can never match"),
        ("rules[7] (h).when[0]", "not `_method`"),
        ("rules[8] (i).when[0]", "every `in` value must be a string"),
        ("rules[9] (j).when[0]", "\"a,b\" is not one"),
    ];
    for (key, fragment) in expect {
        assert!(
            found.iter().any(|(k, m)| k == key && m.contains(fragment)),
            "no `{key}: …{fragment}…` in {found:#?}"
        );
    }
    assert_eq!(found.len(), expect.len(), "{found:#?}");
    // One name or a list.
    load("  - { id: one, effect: deny, principals: [team], methods: [GET], paths: [/x], when: [{ query: include, contains: outputs }] }\n");
}
