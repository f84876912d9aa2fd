//! Targets and routes registered over the operator API: checked with the
//! config in force exactly as `config check` checks the file, kept in the
//! store with their audit record, and put in force without a restart (the
//! reload's machinery). At start, and when another instance of a cluster
//! changed them, the store's registrations are applied again.

use aws_lc_rs::digest::{digest, SHA256};
use futures_util::future::BoxFuture;

use super::reload::Reloader;
use super::setup::Setup;
use super::DaemonError;
use crate::config::registered::{
    merge, valid_id, RegisteredRoute, RegisteredTarget, ROUTE_KIND, TARGET_KIND,
};
use crate::config::Config;
use crate::core::refusal::{Kind, Refusal};
use crate::core::registry::{send_test, Registry, TestOutcome};
use crate::model::audit::AuditEvent;
use crate::model::delivery::Actor;
use crate::model::portal::Operator;
use crate::model::time::{now_ms, rfc3339_ms};
use crate::store::{Store, StoreError};

/// The registered targets and routes kept in the store (rows that cannot be
/// read are logged and left out).
pub async fn registered(
    store: &dyn Store,
) -> Result<(Vec<RegisteredTarget>, Vec<RegisteredRoute>), StoreError> {
    let rows = store.settings(TARGET_KIND).await?;
    let targets = rows
        .iter()
        .filter_map(|(id, v)| {
            serde_json::from_str(v)
                .map_err(|e| tracing::error!(target_id = %id, error = %e, "a registered target in the store cannot be read; it is left out"))
                .ok()
        })
        .collect();
    let rows = store.settings(ROUTE_KIND).await?;
    let routes = rows
        .iter()
        .filter_map(|(id, v)| {
            serde_json::from_str(v)
                .map_err(|e| tracing::error!(route = %id, error = %e, "a registered route in the store cannot be read; it is left out"))
                .ok()
        })
        .collect();
    Ok((targets, routes))
}

/// A digest of what is registered, to notice a change made elsewhere.
fn digest_of(targets: &[RegisteredTarget], routes: &[RegisteredRoute]) -> String {
    let text = serde_json::to_string(&(targets, routes)).unwrap_or_default();
    hex::encode(digest(&SHA256, text.as_bytes()))
}

/// The setup at start with the registered targets and routes added. When
/// they no longer pass the checks (a certificate expired while the daemon was
/// down, say), the daemon starts with the config file's alone and says so:
/// their deliveries wait in the store. Also returns the digest of what it
/// read (see [`Reloader::sync_registered`]).
pub async fn with_registered(
    setup: Setup,
    store: &dyn Store,
) -> Result<(Setup, String), DaemonError> {
    let (targets, routes) = registered(store).await.map_err(|e| {
        DaemonError::Start(format!("reading the registered targets and routes: {e}"))
    })?;
    let seen = digest_of(&targets, &routes);
    if targets.is_empty() && routes.is_empty() {
        return Ok((setup, seen));
    }
    let mut config = setup.config.clone();
    let set_aside = merge(&mut config, &targets, &routes);
    for w in &set_aside {
        tracing::warn!("{w}");
    }
    match tokio::task::spawn_blocking(move || super::setup::setup(config)).await {
        Ok(Ok(merged)) => Ok((merged, seen)),
        Ok(Err(e)) => {
            tracing::error!("the targets and routes registered over the operator API do not pass the checks now; starting with the config file's alone (their deliveries wait in the store): {e}");
            Ok((setup, seen))
        }
        Err(_) => Err(DaemonError::Start("the config check failed to run".into())),
    }
}

fn refused(kind: Kind, slug: &'static str, detail: impl Into<String>) -> Refusal {
    Refusal::new(kind, slug, detail)
}

fn unavailable(e: StoreError) -> Refusal {
    tracing::error!(error = %e, "registering failed");
    Refusal::unavailable("the store cannot be reached right now; nothing was changed; retry later")
}

/// The tenant a registration by `op` belongs to: the one it names, which
/// must be one of theirs; if it names none, their only tenant.
fn tenant_for(op: &Operator, named: Option<&str>) -> Result<Option<String>, Refusal> {
    match (&op.tenants, named) {
        (None, t) => Ok(t.map(str::to_owned)),
        (Some(mine), Some(t)) if mine.contains(t) => Ok(Some(t.to_owned())),
        (Some(_), Some(t)) => Err(refused(
            Kind::Forbidden,
            "not-allowed",
            format!("{} is no operator of tenant {t}", op.id),
        )),
        (Some(mine), None) if mine.len() == 1 => Ok(mine.iter().next().cloned()),
        (Some(_), None) => Err(refused(
            Kind::Invalid,
            "tenant-missing",
            "name the tenant it belongs to (one of yours)",
        )),
    }
}

/// What a registration by an operator of some tenants (or a vendor) may not
/// ask of the gateway's machine: an adapter that writes into its directories
/// (`filedrop`) or serves from its message boxes (`xta`), or a client key
/// file of the gateway's to authenticate with. Operators of every tenant may.
fn local_files_refused(op: &Operator, adapter: &serde_json::Value) -> Option<String> {
    if op.sees_all() {
        return None;
    }
    let kind = adapter["type"].as_str().unwrap_or_default();
    if !matches!(kind, "http" | "amqp") {
        return Some(format!(
            "an operator of some tenants registers http or amqp targets; a {kind:?} target works with the gateway's own directories and is registered by the service provider"
        ));
    }
    ["client_certificate", "client_key"]
        .iter()
        .find(|k| !adapter[**k].is_null())
        .map(|k| format!("{k} names a key file on the gateway's machine; the service provider configures client keys"))
}

/// Whether `op` may register, change or remove target `id` (of `tenant`).
fn may_manage(op: &Operator, id: &str, tenant: Option<&str>) -> bool {
    op.sees_target(id, tenant) && (op.tenants.is_none() || tenant.is_some())
}

impl Reloader {
    /// The config in force with `targets` and `routes` as the registered
    /// ones, checked; a `422` naming every problem if it does not pass.
    async fn check(
        &self,
        current: &Config,
        targets: Vec<RegisteredTarget>,
        routes: Vec<RegisteredRoute>,
    ) -> Result<(Setup, String), Refusal> {
        let mut config = current.clone();
        config.targets.retain(|_, t| !t.registered);
        config.routes.retain(|r| !r.registered);
        let seen = digest_of(&targets, &routes);
        let set_aside = merge(&mut config, &targets, &routes);
        let checked = tokio::task::spawn_blocking(move || super::setup::setup(config))
            .await
            .map_err(|_| Refusal::new(Kind::Internal, "internal", "the check failed to run"))?;
        match checked {
            Ok(setup) if set_aside.is_empty() => Ok((setup, seen)),
            Ok(_) => Err(refused(
                Kind::Conflict,
                "registration-refused",
                set_aside.join("; "),
            )),
            Err(e) => Err(refused(
                Kind::Unprocessable,
                "registration-refused",
                e.0.iter()
                    .map(|e| format!("{}: {}", e.key, e.problem))
                    .collect::<Vec<_>>()
                    .join("; "),
            )),
        }
    }

    fn remember(&self, seen: String) {
        *self
            .registered_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(seen);
    }

    /// Applies what the store holds when it differs from what was applied
    /// last (another instance registered something).
    pub async fn sync_registered(&self) -> Result<(), StoreError> {
        let (targets, routes) = registered(self.store.as_ref()).await?;
        let seen = digest_of(&targets, &routes);
        if self
            .registered_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_deref()
            == Some(seen.as_str())
        {
            return Ok(());
        }
        let mut current = self.current.lock().await;
        match self.check(&current, targets, routes).await {
            Ok((setup, seen)) => {
                let changes = self.apply(&mut current, setup);
                tracing::info!(%changes, "registered targets and routes changed elsewhere: applied");
                self.remember(seen);
            }
            Err(r) => {
                tracing::error!(problem = %r.detail, "registered targets and routes changed elsewhere do not pass the checks here; the ones in force stay");
                self.remember(seen);
            }
        }
        Ok(())
    }

    /// Keeps a setting with its audit record, then puts `setup` in force.
    async fn commit(
        &self,
        current: &mut Config,
        (setup, seen): (Setup, String),
        kind: &str,
        key: &str,
        value: Option<String>,
        event: AuditEvent,
    ) -> Result<(), Refusal> {
        self.store
            .set_setting(kind, key, value, event)
            .await
            .map_err(unavailable)?;
        let changes = self.apply(current, setup);
        self.remember(seen);
        tracing::info!(%changes, setting = kind, id = key, "registration in force");
        Ok(())
    }
}

impl Registry for Reloader {
    fn put_target<'a>(
        &'a self,
        op: &'a Operator,
        mut target: RegisteredTarget,
        create: bool,
    ) -> BoxFuture<'a, Result<RegisteredTarget, Refusal>> {
        Box::pin(async move {
            if !valid_id(&target.id) {
                return Err(refused(
                    Kind::Invalid,
                    "target-id-invalid",
                    "a target id is 1 to 64 letters, digits, '-', '_' or '.'",
                ));
            }
            let mut current = self.current.lock().await;
            if current
                .targets
                .get(&target.id)
                .is_some_and(|t| !t.registered)
            {
                return Err(refused(
                    Kind::Conflict,
                    "target-in-config",
                    format!(
                        "target {} is defined in the config file; change it there",
                        target.id
                    ),
                ));
            }
            let (mut targets, routes) =
                registered(self.store.as_ref()).await.map_err(unavailable)?;
            let existing = targets.iter().position(|t| t.id == target.id);
            if let Some(i) = existing {
                if !may_manage(op, &target.id, targets[i].tenant.as_deref()) {
                    return Err(Refusal::not_found(format!("no target {}", target.id)));
                }
            }
            if let Some(why) = local_files_refused(op, &target.adapter) {
                return Err(refused(Kind::Forbidden, "not-allowed", why));
            }
            target.tenant = tenant_for(op, target.tenant.as_deref())?;
            if !may_manage(op, &target.id, target.tenant.as_deref()) {
                return Err(refused(
                    Kind::Forbidden,
                    "not-allowed",
                    format!("{} may not manage target {}", op.id, target.id),
                ));
            }
            match (create, existing) {
                (true, Some(_)) => {
                    return Err(refused(
                        Kind::Conflict,
                        "target-exists",
                        format!(
                            "target {} is registered already; change it with PUT",
                            target.id
                        ),
                    ))
                }
                (false, None) => {
                    return Err(Refusal::not_found(format!(
                        "no registered target {}",
                        target.id
                    )))
                }
                _ => {}
            }
            target.registered_by = Some(op.id.clone());
            target.registered_at = Some(rfc3339_ms(now_ms()));
            match existing {
                Some(i) => targets[i] = target.clone(),
                None => targets.push(target.clone()),
            }
            let checked = self.check(&current, targets, routes).await?;
            // Valid now is not enough: it must stay valid for the warning period.
            if let Some(cert) = checked.0.targets.get(&target.id) {
                let warn = current.pki.expiry_warning;
                let left = cert.certificate().not_after() - now_ms() / 1000;
                if left < warn.as_secs() as i64 {
                    return Err(refused(Kind::Unprocessable, "registration-refused", format!(
                        "targets.{}.certificate expires in {} day(s), within pki.expiry_warning ({}); give a certificate valid for longer",
                        target.id, left.max(0) / 86400, humantime::format_duration(warn)
                    )));
                }
            }
            let value = serde_json::to_string(&target).unwrap_or_default();
            let by = Actor::new(op.id.clone(), target.tenant.as_deref());
            let change = if create { "registered" } else { "updated" };
            let event = AuditEvent::changed("target", &target.id, change, Some(&value), &by);
            self.commit(
                &mut current,
                checked,
                TARGET_KIND,
                &target.id,
                Some(value),
                event,
            )
            .await?;
            Ok(target)
        })
    }

    fn remove_target<'a>(
        &'a self,
        op: &'a Operator,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(async move {
            let mut current = self.current.lock().await;
            if current.targets.get(id).is_some_and(|t| !t.registered) {
                return Err(refused(
                    Kind::Conflict,
                    "target-in-config",
                    format!("target {id} is defined in the config file; remove it there"),
                ));
            }
            let (mut targets, routes) =
                registered(self.store.as_ref()).await.map_err(unavailable)?;
            let Some(i) = targets.iter().position(|t| t.id == id) else {
                return Err(Refusal::not_found(format!("no registered target {id}")));
            };
            let tenant = targets[i].tenant.clone();
            if !may_manage(op, id, tenant.as_deref()) {
                return Err(Refusal::not_found(format!("no registered target {id}")));
            }
            let routing: Vec<String> = current
                .routes
                .iter()
                .filter(|r| r.targets.iter().any(|t| t == id))
                .map(|r| format!("{} {}", r.leistung, r.destination))
                .collect();
            if !routing.is_empty() {
                return Err(refused(
                    Kind::Conflict,
                    "target-routed",
                    format!(
                        "routes still name {id}: {}; remove them first",
                        routing.join(", ")
                    ),
                ));
            }
            targets.remove(i);
            let checked = self.check(&current, targets, routes).await?;
            let by = Actor::new(op.id.clone(), tenant.as_deref());
            let event = AuditEvent::changed("target", id, "removed", None, &by);
            self.commit(&mut current, checked, TARGET_KIND, id, None, event)
                .await
        })
    }

    fn put_route<'a>(
        &'a self,
        op: &'a Operator,
        mut route: RegisteredRoute,
    ) -> BoxFuture<'a, Result<RegisteredRoute, Refusal>> {
        Box::pin(async move {
            if op.targets.is_some() {
                return Err(refused(
                    Kind::Forbidden,
                    "not-allowed",
                    format!("{} may manage its own targets, not routes", op.id),
                ));
            }
            let mut current = self.current.lock().await;
            let dir = self.operations.directory.load_full();
            if route.targets.is_empty() {
                return Err(refused(
                    Kind::Invalid,
                    "route-invalid",
                    "a route names at least one target",
                ));
            }
            for t in &route.targets {
                if !dir.targets.contains_key(t) || !dir.sees(op, t) {
                    return Err(refused(
                        Kind::Unprocessable,
                        "route-invalid",
                        format!("no target {t}"),
                    ));
                }
            }
            route.tenant = tenant_for(op, route.tenant.as_deref())?;
            if current.routes.iter().any(|r| {
                !r.registered && r.leistung == route.leistung && r.destination == route.destination
            }) {
                return Err(refused(
                    Kind::Conflict,
                    "route-in-config",
                    format!(
                        "the config file routes {} {}; change it there",
                        route.leistung, route.destination
                    ),
                ));
            }
            let (targets, mut routes) =
                registered(self.store.as_ref()).await.map_err(unavailable)?;
            if let Some(old) = routes.iter().find(|r| r.key() == route.key()) {
                if !(op.sees_all()
                    || (old.tenant.is_some() && op.sees_tenant(old.tenant.as_deref())))
                {
                    return Err(refused(
                        Kind::Conflict,
                        "route-exists",
                        format!("route {} is registered by another tenant", route.key()),
                    ));
                }
            }
            route.registered_by = Some(op.id.clone());
            route.registered_at = Some(rfc3339_ms(now_ms()));
            routes.retain(|r| r.key() != route.key());
            routes.push(route.clone());
            let checked = self.check(&current, targets, routes).await?;
            let value = serde_json::to_string(&route).unwrap_or_default();
            let by = Actor::new(op.id.clone(), route.tenant.as_deref());
            let event = AuditEvent::changed("route", &route.key(), "registered", Some(&value), &by);
            self.commit(
                &mut current,
                checked,
                ROUTE_KIND,
                &route.key(),
                Some(value),
                event,
            )
            .await?;
            Ok(route)
        })
    }

    fn remove_route<'a>(
        &'a self,
        op: &'a Operator,
        leistung: &'a str,
        destination: &'a str,
    ) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(async move {
            let mut current = self.current.lock().await;
            let (targets, mut routes) =
                registered(self.store.as_ref()).await.map_err(unavailable)?;
            let key = format!("{leistung} {destination}");
            let missing = || Refusal::not_found(format!("no registered route {key}"));
            let Some(old) = routes.iter().find(|r| r.key() == key).cloned() else {
                return Err(missing());
            };
            let mine = op.sees_all()
                || (op.targets.is_none()
                    && old.tenant.is_some()
                    && op.sees_tenant(old.tenant.as_deref()));
            if !mine {
                return Err(missing());
            }
            routes.retain(|r| r.key() != key);
            let checked = self.check(&current, targets, routes).await?;
            let by = Actor::new(op.id.clone(), old.tenant.as_deref());
            let event = AuditEvent::changed("route", &key, "removed", None, &by);
            self.commit(&mut current, checked, ROUTE_KIND, &key, None, event)
                .await
        })
    }

    fn test_target<'a>(
        &'a self,
        op: &'a Operator,
        id: &'a str,
    ) -> BoxFuture<'a, Result<TestOutcome, Refusal>> {
        Box::pin(async move {
            let dir = self.operations.directory.load_full();
            let missing = || Refusal::not_found(format!("no target {id}"));
            let Some(entry) = dir.targets.get(id) else {
                return Err(missing());
            };
            if !dir.sees(op, id) {
                return Err(missing());
            }
            if entry.adapter == "xta" {
                return Err(refused(Kind::Conflict, "test-not-possible", format!("{id} is a message box: its reader proves it works by fetching a message over XTA")));
            }
            let runtime = self.engine.runtime(id).ok_or_else(missing)?;
            let cert = self
                .intake
                .routes
                .load()
                .targets
                .get(id)
                .cloned()
                .ok_or_else(missing)?;
            let outcome = send_test(&self.intake.seal.current(), &cert, &runtime)
                .await
                .map_err(|e| Refusal::new(Kind::Internal, "internal", e))?;
            let by = Actor::new(op.id.clone(), entry.tenant.as_deref());
            let mut event = AuditEvent::changed("target", id, "tested", None, &by);
            event.detail["outcome"] = outcome.outcome.into();
            if let Some(c) = &outcome.error_class {
                event.detail["error_class"] = c.as_str().into();
            }
            event.message_id = Some(outcome.message_id.clone());
            if let Err(e) = self.store.audit(event).await {
                tracing::error!(error = %e, "the test message went out but could not be audited");
            }
            tracing::info!(target_id = id, operator = %op.id, outcome = outcome.outcome, "test message sent");
            Ok(outcome)
        })
    }
}
