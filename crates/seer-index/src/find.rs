//! One search, from a [`Query`] to ranked [`Found`] results, as `seer search`
//! and the Python package's `Index.search` run it. In two steps, so that the
//! caller loads the model (its own way, with its own options and cache) only
//! when the query needs it: [`Plan::new`] resolves the ranking mode against
//! the index and chooses the model; [`Plan::run`] embeds the query, leaves
//! "more like this" files out of their own results and ranks.

use seer_engine::{EmbedOptions, LoadedModel};

use crate::error::{IndexError, Result};
use crate::hybrid::{rank_words, Found, SearchMode};
use crate::search::{query_vector, Query, SearchOptions};
use crate::searcher::{Searcher, SearcherOptions};
use crate::store::{ModelInfo, Store};
use crate::words::fts_query;

/// A search resolved against one index, before its model is loaded.
pub struct Plan {
    /// The ranking the search uses (never [`SearchMode::Auto`]).
    pub mode: SearchMode,
    /// The model whose vectors are searched: the one asked for, else the
    /// index's only one; `None` in a words search that asked for none.
    pub model: Option<ModelInfo>,
    /// The query's words as a full-text query (`None`: only stop words).
    fts: Option<String>,
}

impl Plan {
    /// Resolves `mode` for `query` on `store`; `model` names the model
    /// whose vectors to use as the index records names (`seer_hub::model_key`).
    pub fn new(
        store: &Store,
        query: &Query,
        mode: SearchMode,
        model: Option<&str>,
    ) -> Result<Self> {
        if query.is_empty() {
            return Err(IndexError::Invalid(
                "nothing to search for: give a text, an image or an indexed file".into(),
            ));
        }
        let fts = fts_query(&query.texts.join(" "));
        let others = !(query.images.is_empty()
            && query.like.is_empty()
            && query.subtract_images.is_empty()
            && query.subtract_texts.is_empty());
        let mode = mode.resolve(fts.as_deref(), others, store.has_captions()?, store.dir())?;
        let model = match (mode, model) {
            (SearchMode::Words, None) => None,
            (_, model) => Some(store.choose_model(model)?),
        };
        Ok(Self { mode, model, fts })
    }

    /// The model the caller must load and pass to [`Plan::run`] (by the name
    /// the index recorded), if the query needs one: texts and images are
    /// embedded, indexed files' vectors are read from the index.
    pub fn model_to_load(&self, query: &Query) -> Option<&str> {
        match (self.mode, &self.model) {
            (SearchMode::Words, _) => None,
            (_, Some(model)) if query.needs_model() => Some(&model.name),
            _ => None,
        }
    }

    /// Ranks `store`'s files for `query`: the best `options.k`, best first.
    /// `loaded` is the model [`Plan::model_to_load`] names, when it names one;
    /// `embed` gives the batch size and decode limits of example images;
    /// `ann_threshold` is the vector count from which a model is searched
    /// through its approximate index ([`crate::ann::ANN_THRESHOLD`]).
    pub fn run(
        &self,
        store: &Store,
        query: &Query,
        loaded: Option<&LoadedModel>,
        embed: &EmbedOptions,
        options: &SearchOptions,
        ann_threshold: usize,
    ) -> Result<Vec<Found>> {
        // "More like this" files are not results of their own query (copies
        // of them, being other files, still are).
        let mut excluded = Vec::new();
        for path in &query.like {
            excluded.extend(store.id_of(path)?);
        }
        let not_excluded = |id: i64| !excluded.contains(&id);
        let keep = (!excluded.is_empty()).then_some(&not_excluded as crate::search::KeepId<'_>);
        let no_words = || IndexError::Invalid("no words to search for".into());
        let Some(model) = &self.model else {
            // A words search that asked for no model (Plan::new).
            let fts = self.fts.as_deref().ok_or_else(no_words)?;
            return rank_words(store, fts, None, options, keep);
        };
        if self.mode == SearchMode::Words {
            let fts = self.fts.as_deref().ok_or_else(no_words)?;
            return rank_words(store, fts, Some(model), options, keep);
        }
        let vector = query_vector(store, model, loaded, query, embed)?;
        let searcher = Searcher::open(
            store,
            model.clone(),
            SearcherOptions {
                ann_threshold,
                resident: false,
            },
        )?;
        match (self.mode, self.fts.as_deref()) {
            (SearchMode::Hybrid, Some(fts)) => {
                searcher.rank_hybrid(store, &vector, fts, options, keep)
            }
            _ => Ok(searcher
                .rank(store, &vector, options, keep)?
                .into_iter()
                .enumerate()
                .map(|(i, hit)| Found::from_hit(hit, i + 1))
                .collect()),
        }
    }
}
