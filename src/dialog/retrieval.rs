//! Which `define user` examples the intent prompt shows: ranked by cosine
//! similarity of an embeddings model when the config has one (the examples'
//! vectors computed once, on first use), else lexically by BM25.

use std::sync::Arc;

use super::Dialog;
use crate::{
    kb::{Bm25, cosine},
    llm::{Embedder, LlmError},
};

/// Examples shown to the intent prompt.
pub(super) const TOP_K: usize = 5;

/// Lexical ranking of the `define user` examples (BM25).
#[derive(Debug)]
pub(super) struct Examples {
    /// (example, intent)
    docs: Vec<(String, String)>,
    lexical: Bm25,
}

impl Examples {
    pub(super) fn new(dialog: &Dialog) -> Self {
        let docs: Vec<(String, String)> = dialog
            .users
            .iter()
            .flat_map(|(intent, examples)| {
                examples.iter().map(move |e| (e.clone(), intent.clone()))
            })
            .collect();
        let lexical = Bm25::new(docs.iter().map(|d| d.0.as_str()));
        Examples { docs, lexical }
    }

    /// The `k` examples most relevant to `query`, best first; ties keep file order.
    pub(super) fn top(&self, query: &str, k: usize) -> Vec<(String, String)> {
        self.lexical
            .top(query, k)
            .into_iter()
            .map(|i| self.docs[i].clone())
            .collect()
    }
}

/// An embeddings model and the examples' vectors, computed on first use.
type Embeddings = (Arc<dyn Embedder>, tokio::sync::OnceCell<Vec<Vec<f32>>>);

/// The examples and how they are ranked.
#[derive(Debug)]
pub(super) struct Retrieval {
    examples: Examples,
    embedder: Option<Embeddings>,
}

impl Retrieval {
    pub(super) fn new(dialog: &Dialog, embedder: Option<Arc<dyn Embedder>>) -> Self {
        Retrieval {
            examples: Examples::new(dialog),
            embedder: embedder.map(|e| (e, tokio::sync::OnceCell::new())),
        }
    }

    /// The examples most relevant to `query`: by embeddings when there is an
    /// embeddings model (lexically if that fails), else by BM25.
    pub(super) async fn relevant(&self, query: &str) -> Vec<(String, String)> {
        if let Some((model, cache)) = &self.embedder {
            match self.by_embeddings(model.as_ref(), cache, query).await {
                Ok(r) => return r,
                Err(e) => {
                    tracing::warn!(error = %e, "embeddings failed; ranking examples lexically")
                }
            }
        }
        self.examples.top(query, TOP_K)
    }

    /// The intent of the example closest to `query` by embeddings, with its
    /// similarity as NeMo scores it (`1 - sqrt(2 - 2 cos) / 2`, 0 to 1);
    /// `None` without an embeddings model or when it fails.
    pub(super) async fn closest(&self, query: &str) -> Option<(String, f64)> {
        let (model, cache) = self.embedder.as_ref()?;
        let docs = &self.examples.docs;
        let examples = cache
            .get_or_try_init(|| model.embed(docs.iter().map(|d| d.0.clone()).collect()))
            .await
            .ok()?;
        let q = model.embed(vec![query.to_string()]).await.ok()?;
        let q = q.first()?;
        examples
            .iter()
            .enumerate()
            .map(|(i, e)| (f64::from(cosine(q, e)), i))
            .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))
            .map(|(cos, i)| {
                let score = 1.0 - (2.0 - 2.0 * cos).max(0.0).sqrt() / 2.0;
                (docs[i].1.clone(), score)
            })
    }

    async fn by_embeddings(
        &self,
        model: &dyn Embedder,
        cache: &tokio::sync::OnceCell<Vec<Vec<f32>>>,
        query: &str,
    ) -> Result<Vec<(String, String)>, LlmError> {
        let docs = &self.examples.docs;
        let examples = cache
            .get_or_try_init(|| model.embed(docs.iter().map(|d| d.0.clone()).collect()))
            .await?;
        let q = model.embed(vec![query.to_string()]).await?;
        let q = q.first().cloned().unwrap_or_default();
        let mut scored: Vec<(f32, usize)> = examples
            .iter()
            .enumerate()
            .map(|(i, e)| (cosine(&q, e), i))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        Ok(scored
            .into_iter()
            .take(TOP_K)
            .map(|(_, i)| (docs[i].0.clone(), docs[i].1.clone()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialog::Dialog;

    #[test]
    fn lexical_retrieval_ranks_the_closest_examples_first() {
        let mut d = Dialog::default();
        d.users.push((
            "express greeting".into(),
            vec!["Hello".into(), "Hi there".into()],
        ));
        d.users.push((
            "ask about capabilities".into(),
            vec![
                "What can you do?".into(),
                "What can you help me with?".into(),
            ],
        ));
        d.users.push((
            "ask about politics".into(),
            vec!["Which party should I vote for?".into()],
        ));
        let ex = Examples::new(&d);
        let top = ex.top("what can you help with", 2);
        assert_eq!(
            top[0],
            (
                "What can you help me with?".to_string(),
                "ask about capabilities".to_string()
            )
        );
        assert_eq!(top[1].1, "ask about capabilities");
        assert_eq!(ex.top("should I vote", 1)[0].1, "ask about politics");
    }
}
