//! Wires the parts together: registry, pool, breakers, executors, engine, gate, audit, store.
