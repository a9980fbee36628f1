//! A call's checks: the rails on its messages without the main model.

use super::{Call, Outcome};
use crate::{engine, error::Error};

impl Call {
    /// The rails on the request's messages, without the main model
    /// (`stages`: which; `None`: as the roles say), bounded as `generate`.
    pub async fn check(
        mut self,
        stages: Option<Vec<crate::rails::Stage>>,
    ) -> Result<engine::CheckResult, Error> {
        let request = std::mem::take(&mut self.request);
        let rails = self.rails.clone();
        let result = self.bounded(rails.check(request, stages)).await;
        self.tally.record(match &result {
            Ok(r) => match &r.violation {
                Some(v) => Outcome::Blocked(v.stage),
                None => Outcome::Ok,
            },
            Err(e) => Outcome::of_error(e),
        });
        drop(self.admitted);
        result
    }

    /// Several checks in turn (`/v1/guardrail/checks`: each message on
    /// its own), bounded as one call; `each` sees every result as it comes
    /// (and stops the rest by returning `false`).
    pub async fn checks(
        mut self,
        items: Vec<(engine::Request, crate::rails::Stage)>,
        mut each: impl FnMut(&engine::CheckResult) -> bool + Send,
    ) -> Result<Vec<engine::CheckResult>, Error> {
        self.request = engine::Request::default();
        let rails = self.rails.clone();
        let work = async {
            let mut out = Vec::with_capacity(items.len());
            for (request, stage) in items {
                let result = rails.check(request, Some(vec![stage])).await?;
                let more = each(&result);
                out.push(result);
                if !more {
                    break;
                }
            }
            Ok(out)
        };
        let result = self.bounded(work).await;
        self.tally.record(match &result {
            Ok(r) => match r.iter().find_map(|c| c.violation.as_ref()) {
                Some(v) => Outcome::Blocked(v.stage),
                None => Outcome::Ok,
            },
            Err(e) => Outcome::of_error(e),
        });
        drop(self.admitted);
        result
    }

    /// `work` within the call's deadline and the shutdown grace.
    pub(super) async fn bounded<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let bounded = async {
            match self.deadline {
                Some(limit) => tokio::time::timeout(limit, work)
                    .await
                    .map_err(|_| Error::DeadlineExceeded(limit))?,
                None => work.await,
            }
        };
        tokio::select! {
            r = bounded => r,
            () = self.state.aborted() => Err(Error::ShuttingDown("the server is shutting down".into())),
        }
    }
}
