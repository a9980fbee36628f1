//! A call's conversation thread: its earlier messages, from the datastore.

use super::{Call, Outcome};
use crate::{error::Error, llm::ChatMessage};

impl Call {
    /// Puts the thread's earlier messages in front of the request's; the
    /// thread's id and the whole conversation sent. A datastore that cannot
    /// be reached fails the call (UNAVAILABLE); calls without a thread never
    /// ask it.
    pub async fn open_thread(
        &mut self,
        id: String,
        field: &'static str,
    ) -> Result<(String, Vec<ChatMessage>), Error> {
        let mut opened = self
            .state
            .threads
            .open(id, &mut self.request.messages, field)
            .await;
        // The limits hold for the whole conversation sent, the thread's too.
        if let (Ok(_), Err(e)) = (&opened, self.state.admission.check(&self.request)) {
            opened = Err(e);
        }
        if let Err(e) = &opened {
            self.tally.record(Outcome::of_error(e));
        }
        opened
    }
}
