//! Router tests without a broker: exposure, links, health groups, show-details, secrets.

use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;

struct Fixture {
    router: Router,
    broker_up: Arc<AtomicBool>,
    shutdown: CancellationToken,
}

fn fixture(yaml: &str) -> Fixture {
    let config = Config::from_yaml_str(yaml).unwrap();
    let broker_up = Arc::new(AtomicBool::new(true));
    let up = broker_up.clone();
    let broker: Arc<dyn HealthIndicator> = Arc::new(move || {
        if up.load(Ordering::Relaxed) {
            Health::up().with_detail("brokers", ["127.0.0.1:9092"])
        } else {
            Health::down().with_detail("error", "connection refused")
        }
    });
    let metrics = Arc::new(Metrics::new(vec![("application".into(), "t".into())]));
    let shutdown = CancellationToken::new();
    let now = chrono::Utc::now().timestamp_millis();
    let router = router(Parts {
        config,
        metrics,
        listeners: Vec::new(),
        dead_letters: Arc::new(|_| Vec::new()),
        consumers: Arc::new(move || {
            vec![ConsumerView {
                listener: "none",
                assigned: 1,
                last_poll_ms: now,
                rebalances: 1,
                member: true,
                lanes: Vec::new(),
                stopped: None,
            }]
        }),
        broker: Some(("kafka".into(), broker)),
        publisher: Arc::new(PublisherStats::default()),
        user: vec![(
            "custom".into(),
            Arc::new(|| Health::up().with_detail("answer", 42)),
        )],
        app_shutdown: shutdown.clone(),
        startup: Default::default(),
        controls: Default::default(),
    });
    Fixture {
        router,
        broker_up,
        shutdown,
    }
}

async fn get(router: &Router, path: &str, accept: Option<&str>) -> (u16, String, String) {
    let mut req = Request::get(path).header("host", "localhost:8081");
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = router
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, ct, String::from_utf8(body.to_vec()).unwrap())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

const ALL: &str = "management:\n  endpoints:\n    web:\n      exposure:\n        include: '*'\n  endpoint:\n    health:\n      show-details: always\nmq:\n  kafka:\n    consumer:\n      properties:\n        sasl.password: top-secret-value\n";

#[tokio::test]
async fn health_groups_from_configuration() {
    let f = fixture(
        "management:\n  endpoint:\n    health:\n      group:\n        readiness:\n          include: kafka,listeners,custom\n          show-details: always\n        probe:\n          include: ping\n          additional-path: server:/healthz\n",
    );
    let (s, _, body) = get(&f.router, "/actuator/health/readiness", None).await;
    assert_eq!(s, 200, "{body}");
    let components = json(&body)["components"].clone();
    assert_eq!(
        components.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["custom", "kafka", "listeners"],
        "a user indicator joins readiness; group details shown: {body}"
    );
    for path in ["/actuator/health/probe", "/healthz"] {
        let (s, _, body) = get(&f.router, path, None).await;
        assert_eq!((s, json(&body)), (200, json!({"status": "UP"})), "{path}");
    }
    f.broker_up.store(false, Ordering::Relaxed);
    assert_eq!(
        get(&f.router, "/actuator/health/readiness", None).await.0,
        503
    );
    assert_eq!(get(&f.router, "/healthz", None).await.0, 200, "ping only");
    assert_eq!(
        get(&f.router, "/actuator/health/liveness", None).await.0,
        200
    );
}

#[tokio::test]
async fn auth_guards_everything_but_the_probes_and_never_shows_a_secret() {
    let yaml = ALL.replacen(
        "management:\n",
        "management:\n  server:\n    auth:\n      username: ops\n      password: pa55-w0rd-xyz\n      bearer-token: t0ken-xyz\n",
        1,
    );
    let f = fixture(&yaml);
    let basic = "Basic b3BzOnBhNTUtdzByZC14eXo="; // ops:pa55-w0rd-xyz
    let paths = [
        "/actuator",
        "/actuator/health",
        "/actuator/health/kafka",
        "/actuator/info",
        "/actuator/metrics",
        "/actuator/metrics/process_open_fds",
        "/actuator/prometheus",
    ];
    for path in paths {
        let (s, _, body) = get(&f.router, path, None).await;
        assert_eq!(s, 401, "{path}: {body}");
        for authorization in [basic, "Bearer t0ken-xyz"] {
            let req = Request::get(path)
                .header("authorization", authorization)
                .body(Body::empty())
                .unwrap();
            let resp = f.router.clone().oneshot(req).await.unwrap();
            assert_eq!(resp.status(), 200, "{path} with {authorization}");
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let body = String::from_utf8_lossy(&body);
            for secret in ["pa55-w0rd-xyz", "t0ken-xyz", "top-secret-value"] {
                assert!(!body.contains(secret), "{path} shows {secret}: {body}");
            }
        }
    }
    for probe in ["/actuator/health/liveness", "/actuator/health/readiness"] {
        assert_eq!(get(&f.router, probe, None).await.0, 200, "{probe}");
    }
    let wrong = Request::get("/actuator/info")
        .header("authorization", "Basic b3BzOndyb25n")
        .body(Body::empty())
        .unwrap();
    let resp = f.router.clone().oneshot(wrong).await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    let config = Config::from_yaml_str(&yaml).unwrap();
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("pa55-w0rd-xyz") && !debug.contains("t0ken-xyz"),
        "{debug}"
    );
}

#[tokio::test]
async fn details_when_authorized() {
    let yaml = "management:\n  server:\n    auth:\n      bearer-token: t0ken-xyz\n  endpoint:\n    health:\n      show-details: when-authorized\n";
    let f = fixture(yaml);
    let with_token = |path: &'static str| {
        let router = f.router.clone();
        async move {
            let req = Request::get(path)
                .header("authorization", "Bearer t0ken-xyz")
                .body(Body::empty())
                .unwrap();
            let resp = router.oneshot(req).await.unwrap();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            json(&String::from_utf8_lossy(&body))
        }
    };
    assert!(with_token("/actuator/health").await["components"]["kafka"].is_object());
    assert!(with_token("/actuator/health/readiness").await["components"].is_object());
    let (s, _, body) = get(&f.router, "/actuator/health/readiness", None).await;
    assert_eq!(
        (s, json(&body)),
        (200, json!({"status": "UP"})),
        "a probe sees no details"
    );
    // No credential configured: when-authorized shows nothing, as Spring Boot without a user.
    let open =
        fixture("management:\n  endpoint:\n    health:\n      show-details: when-authorized\n");
    let (_, _, body) = get(&open.router, "/actuator/health", None).await;
    assert_eq!(json(&body), json!({"status": "UP"}));
}

#[tokio::test]
async fn exclude_wins_over_include() {
    let f = fixture(
        "management:\n  endpoints:\n    web:\n      exposure:\n        include: '*'\n        exclude: metrics,info\n",
    );
    for (path, status) in [
        ("/actuator/health", 200),
        ("/actuator/prometheus", 200),
        ("/actuator/metrics", 404),
        ("/actuator/metrics/process_open_fds", 404),
        ("/actuator/info", 404),
    ] {
        assert_eq!(get(&f.router, path, None).await.0, status, "{path}");
    }
    let (_, _, body) = get(&f.router, "/actuator", None).await;
    let links = json(&body)["_links"].clone();
    assert!(
        links.get("metrics").is_none() && links.get("prometheus").is_some(),
        "{links}"
    );
}

#[tokio::test]
async fn default_exposure_is_health_only() {
    let f = fixture("");
    let (s, _, body) = get(&f.router, "/actuator/health", None).await;
    assert_eq!(s, 200);
    assert_eq!(json(&body), json!({"status": "UP"}), "show-details never");
    for path in [
        "/actuator/info",
        "/actuator/metrics",
        "/actuator/prometheus",
        "/actuator/env",
        "/other",
    ] {
        assert_eq!(get(&f.router, path, None).await.0, 404, "{path}");
    }
    let (s, _, body) = get(&f.router, "/actuator", None).await;
    assert_eq!(s, 200);
    let links = json(&body)["_links"].clone();
    assert_eq!(
        links["health"],
        json!({"href": "/actuator/health", "templated": false})
    );
    assert_eq!(links["self"]["href"], "/actuator");
    // The request's Host header does not make the links.
    let evil = Request::get("/actuator")
        .header("host", "evil.example")
        .body(Body::empty())
        .unwrap();
    let resp = f.router.clone().oneshot(evil).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(!String::from_utf8_lossy(&body).contains("evil"));
    assert!(links.get("info").is_none());
}

#[tokio::test]
async fn health_components_groups_and_status_codes() {
    let f = fixture(ALL);
    let (s, ct, body) = get(&f.router, "/actuator/health", None).await;
    assert_eq!((s, ct.as_str()), (200, "application/json"));
    let h = json(&body);
    assert_eq!(h["status"], "UP");
    for c in ["kafka", "listeners", "publisher", "custom"] {
        assert_eq!(h["components"][c]["status"], "UP", "{c}: {h}");
    }
    assert_eq!(h["components"]["custom"]["details"]["answer"], 42);

    f.broker_up.store(false, Ordering::Relaxed);
    let (s, _, body) = get(&f.router, "/actuator/health", None).await;
    assert_eq!(s, 503);
    assert_eq!(json(&body)["components"]["kafka"]["status"], "DOWN");
    assert_eq!(
        get(&f.router, "/actuator/health/readiness", None).await.0,
        503
    );
    let (s, _, body) = get(&f.router, "/actuator/health/liveness", None).await;
    assert_eq!(s, 200, "liveness never depends on the broker: {body}");
    assert!(json(&body)["components"].get("kafka").is_none());
    let (s, _, body) = get(&f.router, "/actuator/health/kafka", None).await;
    assert_eq!((s, json(&body)["status"].clone()), (503, json!("DOWN")));
    assert_eq!(get(&f.router, "/actuator/health/nope", None).await.0, 404);

    f.broker_up.store(true, Ordering::Relaxed);
    assert_eq!(
        get(&f.router, "/actuator/health/readiness", None).await.0,
        200
    );
    f.shutdown.cancel();
    let (s, _, body) = get(&f.router, "/actuator/health/readiness", None).await;
    assert_eq!(s, 503, "{body}");
    assert_eq!(json(&body)["status"], "OUT_OF_SERVICE");
    assert_eq!(
        get(&f.router, "/actuator/health/liveness", None).await.0,
        200
    );
}

#[tokio::test]
async fn prometheus_negotiates_format() {
    let f = fixture(ALL);
    let (s, ct, body) = get(
        &f.router,
        "/actuator/prometheus",
        Some("application/openmetrics-text; version=1.0.0"),
    )
    .await;
    assert_eq!((s, ct.as_str()), (200, prometheus::OPENMETRICS));
    assert!(body.ends_with("# EOF\n"));
    assert!(
        body.contains("# UNIT process_resident_memory_bytes bytes"),
        "{body}"
    );
    let (s, ct, body) = get(&f.router, "/actuator/prometheus", None).await;
    assert_eq!((s, ct.as_str()), (200, prometheus::TEXT_004));
    assert!(!body.contains("# EOF") && !body.contains("# UNIT"));
    assert!(
        body.contains("# TYPE process_cpu_seconds_total counter"),
        "{body}"
    );
    assert!(
        body.contains("process_cpu_seconds_total{application=\"t\"} "),
        "{body}"
    );
}

#[tokio::test]
async fn metrics_endpoints() {
    let f = fixture(ALL);
    let (s, _, body) = get(&f.router, "/actuator/metrics", None).await;
    assert_eq!(s, 200);
    let names = json(&body)["names"].clone();
    assert!(
        names
            .as_array()
            .unwrap()
            .contains(&json!("process_open_fds")),
        "{names}"
    );
    let (s, _, body) = get(&f.router, "/actuator/metrics/process_open_fds", None).await;
    assert_eq!(s, 200);
    let m = json(&body);
    assert_eq!(m["measurements"][0]["statistic"], "VALUE");
    assert!(m["measurements"][0]["value"].as_f64().unwrap() > 0.0);
    assert_eq!(
        m["availableTags"],
        json!([{"tag": "application", "values": ["t"]}])
    );
    assert_eq!(
        get(
            &f.router,
            "/actuator/metrics/process_open_fds?tag=application:x",
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        get(
            &f.router,
            "/actuator/metrics/process_open_fds?tag=bad",
            None
        )
        .await
        .0,
        400
    );
    assert_eq!(get(&f.router, "/actuator/metrics/nope", None).await.0, 404);
}

#[tokio::test]
async fn no_response_carries_a_secret() {
    let f = fixture(ALL);
    for path in [
        "/actuator",
        "/actuator/health",
        "/actuator/info",
        "/actuator/metrics",
        "/actuator/prometheus",
    ] {
        let (s, _, body) = get(&f.router, path, None).await;
        assert_eq!(s, 200, "{path}");
        assert!(!body.contains("top-secret-value"), "{path}: {body}");
    }
    let (_, _, body) = get(&f.router, "/actuator/info", None).await;
    assert_eq!(
        json(&body)["config"]["mq"]["kafka"]["consumer"]["properties"]["sasl.password"],
        "******"
    );
}

#[tokio::test]
async fn custom_base_path() {
    let f = fixture("management:\n  endpoints:\n    web:\n      base-path: /manage/\n");
    assert_eq!(get(&f.router, "/manage/health", None).await.0, 200);
    assert_eq!(get(&f.router, "/actuator/health", None).await.0, 404);
    let f = fixture("management:\n  endpoints:\n    web:\n      base-path: /\n");
    assert_eq!(get(&f.router, "/health", None).await.0, 200);
}
