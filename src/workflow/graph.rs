//! The dependency graph: cycle detection (with the cycle spelled out) and topological layers.
//! Tasks are indices; `deps[i]` lists the tasks task `i` waits for.
//!
//! Ordering is Kahn's algorithm straight on the index lists: one pass over the edges, no
//! graph built. `petgraph` is only asked to find the strongly connected components once a
//! cycle is known to exist.

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

fn build(deps: &[Vec<usize>]) -> DiGraph<(), ()> {
    let edges: usize = deps.iter().map(Vec::len).sum();
    let mut graph = DiGraph::with_capacity(deps.len(), edges);
    for _ in 0..deps.len() {
        graph.add_node(());
    }
    // An edge runs from a dependency to the task that waits for it.
    for (task, own) in deps.iter().enumerate() {
        for &dep in own {
            graph.add_edge(NodeIndex::new(dep), NodeIndex::new(task), ());
        }
    }
    graph
}

/// Every cycle, one per strongly connected component, each as the path of task indices from
/// its lowest index along "depends on" edges back to that index (`[a, b, c, a]`).
pub(crate) fn find_cycles(deps: &[Vec<usize>]) -> Vec<Vec<usize>> {
    if kahn(deps).is_some() {
        return Vec::new();
    }
    let graph = build(deps);
    let mut cycles = Vec::new();
    for component in tarjan_scc(&graph) {
        let members: Vec<usize> = component.iter().map(|n| n.index()).collect();
        let Some(&start) = members.iter().min() else { continue };
        if members.len() == 1 && !deps[start].contains(&start) {
            continue;
        }
        cycles.push(shortest_cycle_through(deps, start, &members));
    }
    cycles.sort_by_key(|c| c.first().copied());
    cycles
}

/// Breadth-first search along dependencies, inside one component, back to `start`.
fn shortest_cycle_through(deps: &[Vec<usize>], start: usize, members: &[usize]) -> Vec<usize> {
    let mut parent: std::collections::HashMap<usize, usize> =
        members.iter().map(|&m| (m, usize::MAX)).collect();
    let mut queue = std::collections::VecDeque::from([start]);
    let mut seen = std::collections::HashSet::from([start]);
    while let Some(node) = queue.pop_front() {
        for &dep in &deps[node] {
            if dep == start {
                let mut path = vec![node];
                let mut at = node;
                while at != start {
                    at = parent[&at];
                    path.push(at);
                }
                path.reverse();
                path.push(start);
                return path;
            }
            if parent.contains_key(&dep) && seen.insert(dep) {
                parent.insert(dep, node);
                queue.push_back(dep);
            }
        }
    }
    vec![start, start]
}

/// Layer of each task: 0 without dependencies, else one more than its deepest dependency.
/// The graph must be acyclic (validation guarantees it).
pub(crate) fn layers(deps: &[Vec<usize>]) -> Vec<usize> {
    let order = topological_order(deps);
    let mut layer = vec![0; deps.len()];
    for task in order {
        layer[task] = deps[task].iter().map(|&d| layer[d] + 1).max().unwrap_or(0);
    }
    layer
}

/// Tasks ordered so that each comes after all its dependencies (document order when there
/// is a cycle, which validation refuses before anyone asks).
pub(crate) fn topological_order(deps: &[Vec<usize>]) -> Vec<usize> {
    kahn(deps).unwrap_or_else(|| (0..deps.len()).collect())
}

/// Kahn's algorithm: tasks without waiting dependencies first, in index order, each task
/// released when its last dependency is placed. `None` when a cycle leaves some unplaced.
fn kahn(deps: &[Vec<usize>]) -> Option<Vec<usize>> {
    let mut dependents = vec![Vec::new(); deps.len()];
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    for (task, own) in deps.iter().enumerate() {
        for &dep in own {
            dependents[dep].push(task);
        }
    }
    let mut order: Vec<usize> = (0..deps.len()).filter(|&t| waiting[t] == 0).collect();
    let mut next = 0;
    while let Some(&task) = order.get(next) {
        next += 1;
        for &dependent in &dependents[task] {
            waiting[dependent] -= 1;
            if waiting[dependent] == 0 {
                order.push(dependent);
            }
        }
    }
    (order.len() == deps.len()).then_some(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_cycle_in_dependency_order() {
        // a(0) -> b(1) -> c(2) -> a ; d(3) free
        let deps = vec![vec![1], vec![2], vec![0], vec![]];
        assert_eq!(find_cycles(&deps), vec![vec![0, 1, 2, 0]]);
    }

    #[test]
    fn self_dependency_is_a_cycle() {
        assert_eq!(find_cycles(&[vec![0]]), vec![vec![0, 0]]);
    }

    #[test]
    fn layers_follow_the_deepest_dependency() {
        let deps = vec![vec![], vec![0], vec![0, 1], vec![]];
        assert_eq!(layers(&deps), vec![0, 1, 2, 0]);
        assert!(find_cycles(&deps).is_empty());
    }

    #[test]
    fn order_puts_every_task_after_its_dependencies() {
        let deps = vec![vec![3], vec![], vec![0, 1], vec![1], vec![2, 2]];
        let order = topological_order(&deps);
        let position = |t: usize| order.iter().position(|&o| o == t).expect("placed");
        assert_eq!(order.len(), deps.len());
        for (task, own) in deps.iter().enumerate() {
            assert!(own.iter().all(|&d| position(d) < position(task)), "{order:?}");
        }
        assert_eq!(kahn(&[vec![1], vec![0]]), None);
    }
}
