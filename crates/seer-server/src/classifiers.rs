//! The class embeddings of a served model's recent `/v1/classify` label sets.
//!
//! A classification costs its prompts (labels × templates text encodings) far
//! more than its one image, and a client classifying many photos sends the same
//! labels each time: 1,000 labels with the 7 imagenet templates are 7,000 texts
//! for one image. The last few label sets' classifiers are kept, so a repeat
//! costs its image alone. Bounded by entries and by their classes in all (a
//! class is one vector of the model's width).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use seer_engine::ZeroShotClassifier;

/// At most this many label sets are kept...
const MAX_SETS: usize = 16;
/// ...holding at most this many classes in all (16,000 × 768 f32 is 49 MB).
const MAX_CLASSES: usize = 16_000;

/// What a classifier was built from: the labels in order and the template set.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LabelSet {
    pub templates: String,
    pub labels: Vec<String>,
}

/// Recently built classifiers, least recently used first.
#[derive(Default)]
pub struct Classifiers {
    recent: Mutex<VecDeque<(LabelSet, Arc<ZeroShotClassifier>)>>,
}

impl Classifiers {
    /// The classifier built for `set`, if it is still kept (it becomes the most
    /// recently used).
    pub fn get(&self, set: &LabelSet) -> Option<Arc<ZeroShotClassifier>> {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let at = recent.iter().position(|(s, _)| s == set)?;
        let entry = recent.remove(at)?;
        let classifier = entry.1.clone();
        recent.push_back(entry);
        Some(classifier)
    }

    /// Keeps `classifier` for `set`, dropping the least recently used sets
    /// beyond the bounds. A set larger than the whole class bound is not kept.
    pub fn insert(&self, set: LabelSet, classifier: Arc<ZeroShotClassifier>) {
        if set.labels.len() > MAX_CLASSES {
            return;
        }
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.retain(|(s, _)| *s != set);
        recent.push_back((set, classifier));
        let classes =
            |r: &VecDeque<(LabelSet, _)>| r.iter().map(|(s, _)| s.labels.len()).sum::<usize>();
        while recent.len() > MAX_SETS || classes(&recent) > MAX_CLASSES {
            recent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seer_engine::ScoreRule;

    fn set(labels: &[&str]) -> LabelSet {
        LabelSet {
            templates: "default".into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
        }
    }

    fn classifier(set: &LabelSet) -> Arc<ZeroShotClassifier> {
        let embeddings = vec![vec![1.0, 0.0]; set.labels.len()];
        Arc::new(ZeroShotClassifier::from_prompt_embeddings(
            &set.labels,
            &embeddings,
            1,
            ScoreRule::Softmax { scale: 100.0 },
        ))
    }

    #[test]
    fn a_set_is_found_by_its_labels_in_order_and_its_templates() {
        let cache = Classifiers::default();
        let ab = set(&["a", "b"]);
        cache.insert(ab.clone(), classifier(&ab));
        assert!(cache.get(&ab).is_some());
        assert!(cache.get(&set(&["b", "a"])).is_none());
        let imagenet = LabelSet {
            templates: "imagenet".into(),
            ..ab
        };
        assert!(cache.get(&imagenet).is_none());
    }

    #[test]
    fn the_least_recently_used_sets_go_first_past_the_bounds() {
        let cache = Classifiers::default();
        let names: Vec<String> = (0..=MAX_SETS).map(|i| format!("label {i}")).collect();
        for name in &names {
            let s = set(&[name]);
            cache.insert(s.clone(), classifier(&s));
            // The first set is used again each time: it stays.
            assert!(cache.get(&set(&[&names[0]])).is_some());
        }
        assert!(cache.get(&set(&[&names[1]])).is_none(), "evicted");
        assert!(cache.get(&set(&[&names[MAX_SETS]])).is_some());

        // One set of nearly all the classes leaves room for little else.
        let big: Vec<String> = (0..MAX_CLASSES - 1).map(|i| i.to_string()).collect();
        let big = LabelSet {
            templates: "default".into(),
            labels: big,
        };
        cache.insert(big.clone(), classifier(&big));
        assert!(cache.get(&big).is_some());
        let kept = cache.recent.lock().unwrap().len();
        assert_eq!(kept, 2, "the big set and the most recent small one");
        // Larger than the bound: not kept at all.
        let huge = LabelSet {
            templates: "default".into(),
            labels: (0..=MAX_CLASSES).map(|i| i.to_string()).collect(),
        };
        cache.insert(huge.clone(), classifier(&huge));
        assert!(cache.get(&huge).is_none());
        assert!(cache.get(&big).is_some());
    }
}
