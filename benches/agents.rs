//! Agent pool benchmarks. Targets: load and validate 1,000 definitions in ≤ 50 ms; select
//! among 1,000 definitions in ≤ 1 ms per task; write → registry update p50 ≤ 250 ms.
//!
//! Run with `cargo bench --bench agents`.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use flightdeck::agents::{AgentDefinition, Registry, SelectionQuery, best, rank, watch};
use flightdeck::bus::EventBus;

fn main() {
    divan::main();
}

const POOL_SIZE: usize = 1_000;

const DOMAINS: &[&str] = &[
    "api",
    "database",
    "kubernetes",
    "terraform",
    "frontend",
    "react",
    "security",
    "oauth",
    "payments",
    "search",
    "caching",
    "queue",
    "mobile",
    "ios",
    "android",
    "testing",
    "fuzzing",
    "observability",
    "logging",
    "billing",
    "graphql",
    "rust",
    "python",
    "go",
    "migration",
    "compliance",
    "gdpr",
    "performance",
    "latency",
    "storage",
];
const ROLES: &[&str] = &["architect", "reviewer", "builder", "auditor", "tuner", "writer"];

/// A realistic definition: 8 triggers, 4 focus areas, a two-sentence description and a
/// system prompt of about 2 KB.
fn definition_text(index: usize) -> String {
    let domain = |offset: usize| DOMAINS[(index * 7 + offset) % DOMAINS.len()];
    let name = format!("{}-{}-{index}", domain(0), ROLES[index % ROLES.len()]);
    let triggers: Vec<String> = (0..8)
        .map(|i| {
            if i % 3 == 0 {
                format!("{} {}", domain(i), domain(i + 1))
            } else {
                domain(i).to_owned()
            }
        })
        .collect();
    let focus: Vec<&str> = (0..4).map(|i| domain(i + 11)).collect();
    let prompt =
        "Work carefully, explain trade-offs, and list what you checked.\n\n---\n\n".repeat(30);
    format!(
        "---\nname: {name}\ndescription: Handles {} and {} work for services; reviews {} and {} changes before release.\ntier: {}\ncategory: {}\ntriggers: [{}]\nfocus_areas: [{}]\ntools: Read, Write, Edit, Bash, Glob, Grep\nmodel: sonnet\nmax_instances: 2\n---\n# {name}\n\n{prompt}",
        domain(0),
        domain(1),
        domain(2),
        domain(3),
        1 + index % 3,
        domain(5),
        triggers.join(", "),
        focus.join(", "),
    )
}

fn write_pool(dir: &Path) {
    for tier in ["tier1-core", "tier2-specialized", "tier3-experimental"] {
        std::fs::create_dir_all(dir.join(tier)).unwrap();
    }
    for index in 0..POOL_SIZE {
        let tier = ["tier1-core", "tier2-specialized", "tier3-experimental"][index % 3];
        std::fs::write(dir.join(tier).join(format!("agent-{index}.md")), definition_text(index))
            .unwrap();
    }
}

fn generated_pool() -> &'static (tempfile::TempDir, Vec<Arc<AgentDefinition>>) {
    static POOL: OnceLock<(tempfile::TempDir, Vec<Arc<AgentDefinition>>)> = OnceLock::new();
    POOL.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        write_pool(dir.path());
        let registry = Registry::load(dir.path());
        assert!(registry.problems().is_empty(), "{:?}", registry.problems().first());
        assert_eq!(registry.definitions().len(), POOL_SIZE);
        (dir, registry.definitions())
    })
}

/// Read, parse and validate 1,000 files into a fresh registry.
#[divan::bench(sample_count = 30)]
fn load_and_validate_1000(bencher: divan::Bencher<'_, '_>) {
    let dir = generated_pool().0.path();
    bencher.bench(|| Registry::load(divan::black_box(dir)));
}

/// A rescan when nothing changed: files are read and hashed, not parsed again.
#[divan::bench(sample_count = 30)]
fn rescan_unchanged_1000(bencher: divan::Bencher<'_, '_>) {
    let registry = Registry::load(generated_pool().0.path());
    bencher.bench(|| registry.rescan());
}

const TASKS: &[&str] = &[
    "Design a GraphQL API with OAuth for the payments service",
    "Migrate the billing database and check GDPR compliance",
    "Tune kubernetes autoscaling to cut p99 latency",
    "Write fuzzing tests for the search query parser",
];

/// The best agent for one task among 1,000 definitions.
#[divan::bench(args = TASKS)]
fn select_best_of_1000(bencher: divan::Bencher<'_, '_>, task: &str) {
    let defs = &generated_pool().1;
    let scored = best(defs, &SelectionQuery::new(task));
    assert!(scored.is_some(), "{task}");
    bencher.bench(|| best(divan::black_box(defs), &SelectionQuery::new(divan::black_box(task))));
}

/// The full explained ranking of 1,000 definitions for one task.
#[divan::bench]
fn rank_all_1000(bencher: divan::Bencher<'_, '_>) {
    let defs = &generated_pool().1;
    bencher.bench(|| rank(divan::black_box(defs), &SelectionQuery::new(TASKS[0])));
}

/// Time from writing a changed file until the watched registry holds the new version;
/// the median is the p50 reload latency.
#[divan::bench(sample_count = 25, sample_size = 1)]
fn reload_latency_write_to_registry(bencher: divan::Bencher<'_, '_>) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("edited.md");
    std::fs::write(&file, "---\nname: edited\ndescription: version 0\n---\nBody.\n").unwrap();
    let registry = Registry::load(dir.path());
    let _watcher = watch(registry.clone(), EventBus::new()).unwrap();
    let mut version = 0_u64;
    bencher.bench_local(|| {
        version += 1;
        let description = format!("version {version}");
        std::fs::write(
            &file,
            format!("---\nname: edited\ndescription: {description}\n---\nBody.\n"),
        )
        .unwrap();
        while registry.get("edited").is_none_or(|def| def.description != description) {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}
