//! The node a process runs on, as `loadagent_node_info` labels it (the agent's and a live
//! run's, so dashboards join both on `instance`).

/// `loadagent_node_info`'s labels, in the order of its definition.
pub fn node_info_labels(p: &crate::host::platform::Platform) -> Vec<String> {
    let opt = |v: Option<String>| v.unwrap_or_default();
    let cgroup = p.cgroup.as_ref();
    vec![
        node_name(),
        p.arch.clone(),
        p.cpu_model.clone(),
        p.cpu_vendor.clone(),
        p.logical_cpus.to_string(),
        opt(p.physical_cores.map(|c| c.to_string())),
        opt(p.cpu_mhz.map(|m| m.to_string())),
        p.usable_cpus.to_string(),
        p.memory_total_bytes.to_string(),
        opt(cgroup
            .and_then(|c| c.cpu_limit_cores)
            .map(|c| c.to_string())),
        opt(cgroup
            .and_then(|c| c.memory_limit_bytes)
            .map(|m| m.to_string())),
        p.kernel.clone(),
        p.rust_target.clone(),
    ]
}

/// The node's name: `NODE_NAME` (set by the DaemonSet from the downward API), else the hostname.
pub fn node_name() -> String {
    std::env::var("NODE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(sysinfo::System::host_name)
        .unwrap_or_else(|| "unknown".into())
}
