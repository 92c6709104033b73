//! Replicas behind HAProxy: the HAProxy helper itself, and a rolling restart under load.

mod common;

use common::haproxy::{Backend, Haproxy, Options};
use common::*;

/// The helper's contract: requests are spread round-robin, a backend whose health check fails
/// leaves the rotation, and a backend can be moved to another address.
#[test]
fn haproxy_spreads_requests_and_follows_health_checks() {
    let a = Recorder::start();
    let b = Recorder::start();
    let c = Recorder::start();
    let backend = |r: &Recorder| Backend {
        addr: format!("127.0.0.1:{}", r.port).parse().unwrap(),
        check_port: None,
    };
    let h = Haproxy::start(&[backend(&a), backend(&b)], &Options::default());
    let client = reqwest::blocking::Client::new();
    let hits = |r: &Recorder| {
        r.seen()
            .iter()
            .filter(|s| s.starts_with("GET /v2/x"))
            .count()
    };
    for _ in 0..6 {
        let r = client.get(format!("{}/v2/x", h.url())).send().unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!((hits(&a), hits(&b)), (3, 3), "round-robin");

    // Server 1 moves to `c`: its traffic follows.
    h.set_backend(1, &backend(&c));
    h.wait_up(1);
    for _ in 0..4 {
        let r = client.get(format!("{}/v2/x", h.url())).send().unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(hits(&b), 3, "nothing more for the old address");
    assert_eq!(hits(&a) + hits(&c), 7);
    assert!(hits(&c) >= 1, "the new address gets traffic");

    // A backend that is not listening fails its check and is taken out.
    let gone = Backend {
        addr: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        check_port: None,
    };
    h.set_backend(1, &gone);
    h.wait_down(1);
    for _ in 0..4 {
        let r = client.get(format!("{}/v2/x", h.url())).send().unwrap();
        assert_eq!(r.status(), 200, "served by the healthy backend");
    }
}
