//! The knowledge base: a config's `kb/*.md` documents split into topic
//! chunks as NeMo splits them ([`chunks`]), searched for the chunks most
//! relevant to the user's message: by cosine similarity of the config's
//! embeddings model when it has one (the chunks' vectors computed once per
//! config, started at load, off the request path), else lexically by BM25.
//! The top 3 chunks' bodies, joined by newlines, are NeMo's
//! `$relevant_chunks`.

pub mod chunks;

use std::{collections::BTreeMap, sync::Arc};

use tokio::sync::OnceCell;

pub use chunks::Chunk;

use crate::{
    config::{Config, ConfigError},
    llm::Embedder,
};

/// How many chunks a search returns (NeMo's `max_results`).
pub const TOP_K: usize = 3;

/// The most chunks one config's knowledge base may have.
const MAX_CHUNKS: usize = 50_000;

/// Lexical ranking (BM25) of a list of texts.
#[derive(Debug)]
pub struct Bm25 {
    docs: Vec<Vec<String>>,
    df: BTreeMap<String, usize>,
    avg_len: f64,
}

/// Lower-cased words.
pub fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

impl Bm25 {
    pub fn new<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let docs: Vec<Vec<String>> = texts.into_iter().map(tokens).collect();
        let mut df = BTreeMap::new();
        for toks in &docs {
            let mut seen: Vec<&String> = toks.iter().collect();
            seen.sort();
            seen.dedup();
            for t in seen {
                *df.entry(t.clone()).or_insert(0) += 1;
            }
        }
        let avg_len = docs.iter().map(Vec::len).sum::<usize>() as f64 / docs.len().max(1) as f64;
        Bm25 { docs, df, avg_len }
    }

    /// The indices of the `k` texts most relevant to `query`, best first;
    /// ties keep the texts' order.
    pub fn top(&self, query: &str, k: usize) -> Vec<usize> {
        let q = tokens(query);
        let n = self.docs.len() as f64;
        let mut scored: Vec<(f64, usize)> = self
            .docs
            .iter()
            .enumerate()
            .map(|(i, toks)| {
                let len = toks.len() as f64;
                let score: f64 = q
                    .iter()
                    .map(|t| {
                        let tf = toks.iter().filter(|x| *x == t).count() as f64;
                        if tf == 0.0 {
                            return 0.0;
                        }
                        let df = *self.df.get(t).unwrap_or(&0) as f64;
                        let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
                        idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len / self.avg_len.max(1.0)))
                    })
                    .sum();
                (score, i)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().take(k).map(|(_, i)| i).collect()
    }
}

/// The cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let n = norm(a) * norm(b);
    if n == 0.0 { 0.0 } else { dot / n }
}

/// An embeddings model and the chunks' vectors, computed once.
type Embeddings = (Arc<dyn Embedder>, OnceCell<Vec<Vec<f32>>>);

/// A config's knowledge base.
#[derive(Debug)]
pub struct KnowledgeBase {
    chunks: Vec<Chunk>,
    /// `# {title}\n\n{body}`, what NeMo indexes.
    texts: Vec<String>,
    lexical: Bm25,
    embedder: Option<Embeddings>,
}

impl KnowledgeBase {
    /// The config's `kb/` documents, chunked; `None` without any.
    pub fn load(
        config: &Config,
        embedder: Option<Arc<dyn Embedder>>,
    ) -> Result<Option<Arc<Self>>, ConfigError> {
        let mut chunks = Vec::new();
        for doc in config.knowledge_base() {
            let found = chunks::split(&doc.text, chunks::MAX_CHUNK)
                .map_err(|m| ConfigError::invalid(&doc.path, "kb", m))?;
            chunks.extend(found);
            if chunks.len() > MAX_CHUNKS {
                return Err(ConfigError::invalid(
                    &doc.path,
                    "kb",
                    format!("the knowledge base has more than {MAX_CHUNKS} chunks"),
                ));
            }
        }
        if chunks.is_empty() {
            return Ok(None);
        }
        let texts: Vec<String> = chunks
            .iter()
            .map(|c| format!("# {}\n\n{}", c.title, c.body.trim()))
            .collect();
        let kb = Arc::new(KnowledgeBase {
            lexical: Bm25::new(texts.iter().map(String::as_str)),
            chunks,
            texts,
            embedder: embedder.map(|e| (e, OnceCell::new())),
        });
        // The chunks' vectors are computed at load, off the request path.
        if kb.embedder.is_some()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let warm = kb.clone();
            runtime.spawn(async move {
                if let Err(e) = warm.vectors().await {
                    tracing::warn!(error = %e, "knowledge base embeddings failed; searching lexically until they work");
                }
            });
        }
        Ok(Some(kb))
    }

    /// How many chunks it has.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    async fn vectors(&self) -> Result<&Vec<Vec<f32>>, crate::llm::LlmError> {
        let Some((model, cell)) = &self.embedder else {
            return Err(crate::llm::LlmError::Api("no embeddings model".into()));
        };
        cell.get_or_try_init(|| model.embed(self.texts.clone()))
            .await
    }

    /// The chunks most relevant to `query`, best first.
    pub async fn search(&self, query: &str, k: usize) -> Vec<&Chunk> {
        if let Some((model, _)) = &self.embedder {
            match self.by_embeddings(model.as_ref(), query, k).await {
                Ok(found) => return found,
                Err(e) => {
                    tracing::warn!(error = %e, "knowledge base embeddings failed; searching lexically")
                }
            }
        }
        self.lexical
            .top(query, k)
            .into_iter()
            .map(|i| &self.chunks[i])
            .collect()
    }

    async fn by_embeddings(
        &self,
        model: &dyn Embedder,
        query: &str,
        k: usize,
    ) -> Result<Vec<&Chunk>, crate::llm::LlmError> {
        let vectors = self.vectors().await?;
        let q = model.embed(vec![query.to_string()]).await?;
        let q = q.first().cloned().unwrap_or_default();
        let mut scored: Vec<(f32, usize)> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| (cosine(&q, v), i))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        Ok(scored
            .into_iter()
            .take(k)
            .map(|(_, i)| &self.chunks[i])
            .collect())
    }

    /// NeMo's `$relevant_chunks` for `query`: the top chunks' bodies, one per line.
    pub async fn relevant_chunks(&self, query: &str) -> String {
        self.relevant(query).await.join("\n")
    }

    /// The bodies of the chunks most relevant to `query` (NeMo's
    /// `$relevant_chunks_sep`).
    pub async fn relevant(&self, query: &str) -> Vec<String> {
        let found = self.search(query, TOP_K).await;
        found.iter().map(|c| c.body.clone()).collect()
    }
}
