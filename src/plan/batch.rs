//! Expands a buildspec's `batch` section into the builds to run (pure).

use crate::buildspec::model::{Batch, BatchEnv, BatchTask};

/// One build of a batch, before it is planned.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TaskDef {
    pub identifier: String,
    /// Another buildspec (relative to the source directory); `None`: the same one.
    pub buildspec: Option<String>,
    pub image: Option<String>,
    pub privileged: Option<bool>,
    pub variables: Vec<(String, String)>,
    pub depend_on: Vec<String>,
    pub ignore_failure: bool,
}

/// The batch's tasks and whether it fails fast.
pub fn expand(batch: &Batch) -> (Vec<TaskDef>, bool) {
    match batch {
        Batch::List { fast_fail, tasks } => (tasks.iter().map(from_task).collect(), *fast_fail),
        Batch::Graph { fast_fail, tasks } => (tasks.iter().map(from_task).collect(), *fast_fail),
        Batch::Matrix { fast_fail, matrix } => {
            let mut combos: Vec<TaskDef> = vec![TaskDef {
                image: matrix.static_env.image.clone(),
                privileged: matrix.static_env.privileged_mode,
                variables: vars(&matrix.static_env),
                ignore_failure: matrix.ignore_failure,
                ..Default::default()
            }];
            if !matrix.buildspecs.is_empty() {
                combos = product(combos, &matrix.buildspecs, |t, b| {
                    t.buildspec = Some(b.clone())
                });
            }
            if !matrix.images.is_empty() {
                combos = product(combos, &matrix.images, |t, i| t.image = Some(i.clone()));
            }
            for (name, values) in &matrix.variables {
                combos = product(combos, values, |t, v| {
                    t.variables.retain(|(n, _)| n != name);
                    t.variables.push((name.clone(), v.clone()));
                });
            }
            for (i, t) in combos.iter_mut().enumerate() {
                t.identifier = format!("build{}", i + 1);
            }
            (combos, *fast_fail)
        }
        Batch::Fanout {
            fast_fail,
            parallelism,
            ignore_failure,
        } => {
            let n = (*parallelism).max(1);
            let tasks = (0..n)
                .map(|i| TaskDef {
                    identifier: format!("build_fanout_{}", i + 1),
                    variables: vec![
                        ("CODEBUILD_BATCH_BUILD_SHARD_INDEX".into(), i.to_string()),
                        ("CODEBUILD_BATCH_BUILD_SHARD_COUNT".into(), n.to_string()),
                    ],
                    ignore_failure: *ignore_failure,
                    ..Default::default()
                })
                .collect();
            (tasks, *fast_fail)
        }
    }
}

fn vars(env: &BatchEnv) -> Vec<(String, String)> {
    env.variables
        .iter()
        .map(|v| (v.name.clone(), v.value.clone()))
        .collect()
}

fn from_task(t: &BatchTask) -> TaskDef {
    TaskDef {
        identifier: t.identifier.clone(),
        buildspec: t.buildspec.clone(),
        image: t.env.image.clone(),
        privileged: t.env.privileged_mode,
        variables: vars(&t.env),
        depend_on: t.depend_on.clone(),
        ignore_failure: t.ignore_failure,
    }
}

fn product<T: Clone>(
    combos: Vec<TaskDef>,
    values: &[T],
    set: impl Fn(&mut TaskDef, &T),
) -> Vec<TaskDef> {
    let mut out = Vec::with_capacity(combos.len() * values.len());
    for c in combos {
        for v in values {
            let mut t = c.clone();
            set(&mut t, v);
            out.push(t);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buildspec::model::BuildMatrix;

    #[test]
    fn matrix_is_a_cartesian_product() {
        let batch = Batch::Matrix {
            fast_fail: false,
            matrix: BuildMatrix {
                images: vec!["a".into(), "b".into()],
                variables: vec![("V".into(), vec!["1".into(), "2".into(), "3".into()])],
                ..Default::default()
            },
        };
        let (tasks, ff) = expand(&batch);
        assert!(!ff);
        assert_eq!(tasks.len(), 6);
        assert_eq!(tasks[0].identifier, "build1");
        assert_eq!(tasks[5].image.as_deref(), Some("b"));
        assert_eq!(tasks[5].variables, vec![("V".to_string(), "3".to_string())]);
    }
}
