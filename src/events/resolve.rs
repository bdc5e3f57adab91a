//! From an event to the one service it is about, inside what cutover evaluates.
//!
//! Builds and alerts name a service and, perhaps, its project and region; cutover fills in
//! the rest from its settings and then asks one question before touching anything: would a
//! tick ever look at this service again? Ticks list only `GOOGLE_CLOUD_PROJECT` ×
//! `CUTOVER_REGIONS` ([`crate::reconcile::Reconciler::tick`]). A rollout started anywhere else
//! would take its first step and then never be judged: its candidate would keep that share of
//! the traffic for ever. So an event outside that scope is refused: nothing is read or
//! written, the message is acknowledged, and the refusal is an error-level decision record
//! naming the setting to change. Both push handlers resolve through [`Scope::resolve`], so the
//! defaults, the checks and the refusal are the same for both.

use jiff::Timestamp;
use serde_json::json;

use super::ids::{ProjectId, Region, ServiceName};
use crate::decision::Trigger;
use crate::error::Acked;
use crate::reconcile::DecisionRecord;
use crate::target::ServiceRef;

/// The setting naming the one project cutover evaluates.
pub const PROJECT_SETTING: &str = "GOOGLE_CLOUD_PROJECT";
/// The setting listing the regions cutover evaluates.
pub const REGIONS_SETTING: &str = "CUTOVER_REGIONS";
/// The setting giving the region of events that name none.
pub const DEFAULT_REGION_SETTING: &str = "CUTOVER_REGION";

/// What cutover evaluates, as configured: the project and regions ticks list, and the region
/// an event that names none is about.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    /// `GOOGLE_CLOUD_PROJECT`.
    pub project: &'a str,
    /// `CUTOVER_REGION`.
    pub default_region: &'a str,
    /// `CUTOVER_REGIONS`.
    pub regions: &'a [String],
}

/// The service an event names, and where, as far as the event says.
#[derive(Clone, Copy, Debug)]
pub struct Named<'a> {
    pub project: Option<&'a ProjectId>,
    pub region: Option<&'a Region>,
    pub service: &'a ServiceName,
}

/// Why cutover will not act on an event: acting would start (or touch) a rollout that no tick
/// ever evaluates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The service as the event named it (`project/region/name`).
    pub service: String,
    /// The setting an operator changes to have cutover evaluate it.
    pub setting: &'static str,
    /// What is out of scope, and what to do, for people.
    pub why: String,
}

impl Scope<'_> {
    /// The service `named` is about (its project, else cutover's; its region, else the default
    /// region), if cutover evaluates it.
    pub fn resolve(&self, named: Named<'_>) -> Result<ServiceRef, Refusal> {
        let project = named.project.map_or(self.project, |p| p.as_str());
        let (region, region_setting) = match named.region {
            Some(r) => (r.as_str(), REGIONS_SETTING),
            None => (self.default_region, DEFAULT_REGION_SETTING),
        };
        let refuse = |setting: &'static str, why: String| Refusal {
            service: format!("{project}/{region}/{}", named.service),
            setting,
            why,
        };
        if project != self.project {
            return Err(refuse(
                PROJECT_SETTING,
                format!(
                    "project {project} is not the project cutover evaluates ({PROJECT_SETTING}={}): no tick would ever judge a rollout there; run a cutover with {PROJECT_SETTING}={project} for it",
                    self.project
                ),
            ));
        }
        if !self.regions.iter().any(|r| r == region) {
            return Err(refuse(
                REGIONS_SETTING,
                format!(
                    "region {region} is not one cutover evaluates ({REGIONS_SETTING}={}): no tick would ever judge a rollout there; add {region} to {REGIONS_SETTING}",
                    self.regions.join(",")
                ),
            ));
        }
        // Event ids are valid by construction; what is left to check is cutover's own settings
        // (which reach here as text).
        let project = ProjectId::parse(project)
            .map_err(|e| refuse(PROJECT_SETTING, format!("{PROJECT_SETTING}: {e}")))?;
        let region = Region::parse(region)
            .map_err(|e| refuse(region_setting, format!("{region_setting}: {e}")))?;
        Ok(ServiceRef::from_ids(&project, &region, named.service))
    }
}

impl Refusal {
    /// The refusal as a decision record (decision `refused`, nothing written), logged at error
    /// level: an operator must change a setting, or a build or alert policy, for it to stop.
    /// `event` says what was refused (`build 0d97c63e-…`).
    pub fn record(&self, event: &str, trigger: &Trigger, at: Timestamp) -> DecisionRecord {
        let rec = DecisionRecord::refused(
            &self.service,
            trigger,
            format!("{event} refused: {}", self.why),
            at,
        );
        tracing::error!(
            target: "cutover::decision",
            service = %rec.service,
            trigger = rec.trigger,
            decision = rec.decision.as_str(),
            reason = %rec.reason,
            setting = self.setting,
            write = %rec.write,
            "decision"
        );
        rec
    }

    /// The acknowledgement for a refused message: handled (there is nothing to retry), with
    /// the refusal as its one decision.
    pub fn acked(
        &self,
        message_id: String,
        event: &str,
        trigger: &Trigger,
        at: Timestamp,
    ) -> Acked {
        Acked::Handled {
            message_id,
            body: json!({ "decisions": [self.record(event, trigger, at)] }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions() -> Vec<String> {
        vec!["europe-west1".into(), "us-central1".into()]
    }

    fn scope(regions: &[String]) -> Scope<'_> {
        Scope {
            project: "acme-prod",
            default_region: "europe-west1",
            regions,
        }
    }

    fn ids(project: &str, region: &str) -> (ProjectId, Region, ServiceName) {
        (
            ProjectId::parse(project).unwrap(),
            Region::parse(region).unwrap(),
            ServiceName::parse("api").unwrap(),
        )
    }

    #[test]
    fn defaults_fill_in_what_the_event_does_not_say() {
        let regions = regions();
        let (_, _, api) = ids("x", "x");
        let named = Named {
            project: None,
            region: None,
            service: &api,
        };
        assert_eq!(
            scope(&regions).resolve(named),
            Ok(ServiceRef::new("acme-prod", "europe-west1", "api"))
        );
        let (p, r, api) = ids("acme-prod", "us-central1");
        let named = Named {
            project: Some(&p),
            region: Some(&r),
            service: &api,
        };
        assert_eq!(
            scope(&regions).resolve(named),
            Ok(ServiceRef::new("acme-prod", "us-central1", "api"))
        );
    }

    #[test]
    fn a_region_or_project_ticks_never_list_is_refused_naming_the_setting() {
        let regions = regions();
        let (p, r, api) = ids("acme-prod", "asia-east1");
        let refusal = scope(&regions)
            .resolve(Named {
                project: Some(&p),
                region: Some(&r),
                service: &api,
            })
            .expect_err("region out of scope");
        assert_eq!(refusal.setting, REGIONS_SETTING);
        assert_eq!(refusal.service, "acme-prod/asia-east1/api");
        assert!(refusal.why.contains("asia-east1"), "{}", refusal.why);

        let (p, _, api) = ids("other-proj", "x");
        let refusal = scope(&regions)
            .resolve(Named {
                project: Some(&p),
                region: None,
                service: &api,
            })
            .expect_err("project out of scope");
        assert_eq!(refusal.setting, PROJECT_SETTING);
        assert!(refusal.why.contains("other-proj"), "{}", refusal.why);

        // The default region itself may be outside CUTOVER_REGIONS.
        let only_us = vec!["us-central1".to_owned()];
        let refusal = scope(&only_us)
            .resolve(Named {
                project: None,
                region: None,
                service: &api,
            })
            .expect_err("default region not evaluated");
        assert_eq!(refusal.setting, REGIONS_SETTING);
    }

    #[test]
    fn a_refusal_is_an_error_record_that_writes_nothing() {
        let refusal = Refusal {
            service: "p/r/api".into(),
            setting: REGIONS_SETTING,
            why: "region r is not one cutover evaluates".into(),
        };
        let trigger = Trigger::Build {
            build_id: "b-1".into(),
        };
        let at: Timestamp = "2026-08-20T10:00:00Z".parse().unwrap();
        let rec = refusal.record("build b-1", &trigger, at);
        assert_eq!(
            (rec.decision.as_str(), rec.trigger, rec.write.as_str()),
            ("refused", "build", "none")
        );
        assert_eq!(rec.service, "p/r/api");
        assert!(rec.reason.starts_with("build b-1 refused: region r"));
        assert_eq!(rec.percent, None);
    }
}
