//! Runtime handlers (issue 22): what a handler reserves raises a pod's tier and never lowers it;
//! a final tier above the reservation is refused naming the RuntimeClass to use, unless the policy
//! accepts it unaccounted; a container runs under its pod's handler.

use std::path::Path;

use proptest::prelude::*;
use router_config::{Isolation, Policy};

use super::fixtures::{container_spec, inputs, sandbox_spec, POLICY};
use crate::{decide_container, decide_sandbox, handler, Inputs};

const HANDLERS: &str = r#"
[handlers.router]
reserves = "container"
[handlers.router-sandbox]
reserves = "sandbox"
[handlers.router-vm]
reserves = "vm"
backend = "kata"
runtime_class = "kata-accounted"
"#;

/// The fixture policy with the handler table, and `top` (top-level keys) before it.
fn policy_with(top: &str) -> Policy {
    let text = format!("{top}\n{POLICY}\n{HANDLERS}");
    router_config::parse(&text, Path::new("/test/policy.toml")).unwrap_or_else(|e| panic!("{e}"))
}

fn pod(ns: &str, handler: Option<&str>) -> Inputs {
    let mut i = inputs(&sandbox_spec(ns), "k8s.io");
    i.handler = handler.map(String::from);
    i
}

#[test]
fn tier_is_the_strongest_of_tenant_override_and_handler() {
    let pol = policy_with("");
    // (namespace, override backend, handler, Ok(backend, tier) or Err(message part))
    type Case = (
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        Result<(&'static str, Isolation), &'static str>,
    );
    let cases: &[Case] = &[
        // trusted tenant on its own tier
        ("kube-system", None, Some("router"), Ok(("runc", Isolation::Container))),
        // a class raises, as the annotation does
        ("kube-system", None, Some("router-vm"), Ok(("kata", Isolation::Vm))),
        ("kube-system", None, Some("router-sandbox"), Ok(("gvisor", Isolation::Sandbox))),
        // untrusted needs vm: the container-tier handler is refused, naming the class
        ("someone", None, Some("router"), Err("runs on the vm tier (backend `kata`), but its runtime handler `router` reserves only container: use RuntimeClass `kata-accounted` (handler `router-vm`)")),
        ("someone", None, Some("router-sandbox"), Err("reserves only sandbox: use RuntimeClass `kata-accounted`")),
        ("someone", None, Some("router-vm"), Ok(("kata", Isolation::Vm))),
        // the sandboxed tenant: its own tier through its handler, raised by the vm handler
        ("sandbox-a", None, Some("router-sandbox"), Ok(("gvisor", Isolation::Sandbox))),
        ("sandbox-a", None, Some("router-vm"), Ok(("kata", Isolation::Vm))),
        ("sandbox-a", None, Some("router"), Err("use RuntimeClass `router-sandbox` (handler `router-sandbox`)")),
        // an unnamed handler (or none) reserves the default, container
        ("kube-system", None, Some("other"), Ok(("runc", Isolation::Container))),
        ("kube-system", None, None, Ok(("runc", Isolation::Container))),
        ("someone", None, Some("other"), Err("runtime handler `other` reserves only container")),
        ("someone", None, None, Err("(none: the router was started under another name) reserves only container")),
        // the annotation raises above the handler: refused as well (the class did not reserve it)
        ("kube-system", Some("kata"), Some("router"), Err("use RuntimeClass `kata-accounted`")),
        ("kube-system", Some("kata-clh"), Some("router-vm"), Ok(("kata-clh", Isolation::Vm))),
        // the handler raises above the annotation's sandbox
        ("kube-system", Some("gvisor"), Some("router-vm"), Ok(("kata", Isolation::Vm))),
    ];
    for (ns, over, h, want) in cases {
        let mut i = pod(ns, *h);
        if let Some(b) = over {
            i.annotations
                .insert("runtime-router.io/backend".into(), b.to_string());
        }
        let got = decide_sandbox(&pol, &i);
        match (want, got) {
            (Ok((b, tier)), Ok(d)) => {
                assert_eq!(
                    (d.backend.as_str(), d.isolation),
                    (*b, *tier),
                    "{ns} {over:?} {h:?}: {d:?}"
                );
            }
            (Err(part), Err(r)) => {
                assert_eq!(r.rule, "handler", "{ns} {h:?}: {r}");
                assert!(
                    r.message.contains(part),
                    "{ns} {over:?} {h:?}: {}",
                    r.message
                );
                assert!(r.to_string().contains("tenant"), "{r}");
            }
            (w, g) => panic!("{ns} {over:?} {h:?}: want {w:?}, got {g:?}"),
        }
    }
}

#[test]
fn unaccounted_tiers_and_unnamed_handlers_are_the_policys_choice() {
    let pol = policy_with("unaccounted_tiers = [\"sandbox\"]");
    let d =
        decide_sandbox(&pol, &pod("sandbox-a", Some("router"))).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.isolation, Isolation::Sandbox);
    assert!(
        d.reasons.iter().any(|r| r.contains("accepted unaccounted")),
        "{d:?}"
    );
    assert!(decide_sandbox(&pol, &pod("someone", Some("router"))).is_err());

    let pol = policy_with("unnamed_handler_reserves = \"vm\"");
    let d =
        decide_sandbox(&pol, &pod("kube-system", Some("other"))).unwrap_or_else(|e| panic!("{e}"));
    // an unnamed handler raises as the policy's handler of that tier does
    assert_eq!((d.backend.as_str(), d.isolation), ("kata", Isolation::Vm));
    let d = decide_sandbox(&pol, &pod("someone", None)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.isolation, Isolation::Vm);

    // no table: no accounting at all
    let bare = super::fixtures::policy();
    let d =
        decide_sandbox(&bare, &pod("someone", Some("router"))).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.isolation, Isolation::Vm);
}

#[test]
fn a_container_runs_under_its_pods_handler() {
    let pol = policy_with("");
    let mut c = inputs(&container_spec("someone"), "k8s.io");
    c.handler = Some("router-vm".into());
    let d = decide_container(&pol, &c, "untrusted", "kata").unwrap_or_else(|e| panic!("{e}"));
    assert!(handler::check_container(&pol, &c, &d.tenant, Some("router-vm")).is_ok());
    let e = handler::check_container(&pol, &c, &d.tenant, Some("router")).unwrap_err();
    assert_eq!(e.rule, "handler");
    assert!(
        e.message
            .contains("through runtime handler `router-vm`, its pod"),
        "{e}"
    );
    // a record from before handlers were recorded counts as `router`
    c.handler = Some("router".into());
    assert!(handler::check_container(&pol, &c, &d.tenant, None).is_ok());
    c.handler = None;
    assert!(handler::check_container(&pol, &c, &d.tenant, Some("router")).is_err());
    // no table: not compared
    assert!(handler::check_container(&super::fixtures::policy(), &c, &d.tenant, Some("x")).is_ok());
}

fn handler_name() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("router".to_string())),
        Just(Some("router-sandbox".to_string())),
        Just(Some("router-vm".to_string())),
        "[a-z]{1,8}".prop_map(Some),
    ]
}

proptest! {
    /// Whatever the handler, a pod gets at least its tenant's tier and at least what a named
    /// handler reserves; and when it runs, its tier is covered by its handler's reservation.
    #[test]
    fn a_handler_never_lowers_and_what_runs_is_accounted(
        ns in prop_oneof![Just("kube-system"), Just("sandbox-x"), Just("web"), Just("other")],
        h in handler_name(),
    ) {
        let pol = policy_with("");
        let bare = super::fixtures::policy();
        let own = decide_sandbox(&bare, &pod(ns, None)).map(|d| d.isolation);
        let got = decide_sandbox(&pol, &pod(ns, h.as_deref()));
        let (reserves, _) = pol.handler_reserves(h.as_deref());
        if let (Ok(own), Ok(d)) = (&own, &got) {
            prop_assert!(d.isolation >= *own);
            prop_assert!(d.isolation >= reserves);
            prop_assert!(d.isolation <= reserves, "{:?} above {:?}", d, reserves);
        }
        if let Err(r) = &got {
            prop_assert!(r.rule == "handler" || own.is_err(), "{}", r);
        }
    }
}
