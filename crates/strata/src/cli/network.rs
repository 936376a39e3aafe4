//! `network` commands (create, ls, inspect, rm, prune, connect, disconnect) and `port`.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use strata_engine::Engine;
use strata_network::{CreateNetwork, Network};

use super::CliError;
use crate::format::{self, ListFormat};

#[derive(Subcommand)]
pub enum NetworkCommand {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks
    Inspect {
        /// Format output using a custom template
        #[arg(short, long)]
        format: Option<String>,
        /// Verbose output for diagnostics
        #[arg(short, long)]
        verbose: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm {
        /// Do not error if the network does not exist
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove all unused networks
    Prune {
        /// Do not prompt for confirmation
        #[arg(short, long)]
        force: bool,
        /// Provide filter values (e.g. "label=<key>=<value>")
        #[arg(long = "filter")]
        filters: Vec<String>,
    },
    /// Connect a container to a network
    Connect {
        /// Add network-scoped alias for the container
        #[arg(long = "alias")]
        aliases: Vec<String>,
        /// IPv4 address (e.g., "172.30.100.104")
        #[arg(long)]
        ip: Option<String>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network
    Disconnect {
        /// Force the container to disconnect from a network
        #[arg(short, long)]
        force: bool,
        network: String,
        container: String,
    },
}

#[derive(Args)]
pub struct CreateArgs {
    /// Driver to manage the Network
    #[arg(short, long)]
    pub driver: Option<String>,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    pub subnet: Vec<String>,
    /// IPv4 or IPv6 Gateway for the master subnet
    #[arg(long)]
    pub gateway: Vec<String>,
    /// Allocate container ip from a sub-range
    #[arg(long = "ip-range")]
    pub ip_range: Vec<String>,
    /// Restrict external access to the network
    #[arg(long)]
    pub internal: bool,
    /// Enable manual container attachment
    #[arg(long)]
    pub attachable: bool,
    /// Enable or disable IPv6 networking
    #[arg(long)]
    pub ipv6: bool,
    /// Set metadata on a network
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Set driver specific options
    #[arg(short, long = "opt")]
    pub opts: Vec<String>,
    /// IP Address Management Driver
    #[arg(long = "ipam-driver")]
    pub ipam_driver: Option<String>,
    pub name: String,
}

#[derive(Args)]
pub struct LsArgs {
    /// Only display network IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Provide filter values (e.g. "driver=bridge")
    #[arg(short, long = "filter")]
    pub filters: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Do not truncate the output
    #[arg(long)]
    pub no_trunc: bool,
}

#[derive(Args)]
pub struct PortArgs {
    pub container: String,
    /// PRIVATE_PORT[/PROTO]
    pub port: Option<String>,
}

fn pairs(v: &[String]) -> BTreeMap<String, String> {
    v.iter().map(|s| s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).unwrap_or((s.clone(), String::new()))).collect()
}

fn invalid_filter(what: &str) -> CliError {
    CliError { message: format!("invalid filter '{what}'"), ..CliError::usage("") }.engine()
}

/// docker's network filters: driver, id, label, name, scope, type (custom|builtin),
/// dangling.
fn matches(engine: &Engine, n: &Network, filters: &[(String, String)]) -> Result<bool, CliError> {
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in filters {
        groups.entry(k.as_str()).or_default().push(v.as_str());
    }
    for (k, vs) in groups {
        let any = |f: &dyn Fn(&str) -> bool| vs.iter().any(|v| f(v));
        let ok = match k {
            "driver" => any(&|v| n.driver == v),
            "id" => any(&|v| n.id.starts_with(v)),
            "name" => any(&|v| n.name.contains(v)),
            "scope" => any(&|v| v == "local"),
            "type" => {
                for v in &vs {
                    if !matches!(*v, "custom" | "builtin") {
                        return Err(CliError { message: format!("invalid filter: 'type'='{v}'"), ..CliError::usage("") }.engine());
                    }
                }
                any(&|v| (v == "builtin") == n.predefined())
            }
            "label" => vs.iter().all(|v| match v.split_once('=') {
                Some((lk, lv)) => n.labels.get(lk).map(String::as_str) == Some(lv),
                None => n.labels.contains_key(*v),
            }),
            "dangling" => {
                let used = engine.networks().store().endpoints_on(&n.id).map(|e| !e.is_empty()).unwrap_or(true);
                any(&|v| match v {
                    "true" | "1" => !used && !n.predefined(),
                    _ => used || n.predefined(),
                })
            }
            _ => return Err(invalid_filter(k)),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn parse_filters(raw: &[String]) -> Result<Vec<(String, String)>, CliError> {
    raw.iter()
        .map(|f| f.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| CliError::usage("bad format of filter (expected name=value)")))
        .collect()
}

pub fn run(engine: &Engine, cmd: NetworkCommand) -> Result<u8, CliError> {
    let store = engine.networks().store();
    match cmd {
        NetworkCommand::Create(a) => {
            if a.subnet.len() > 1 || a.gateway.len() > 1 || a.ip_range.len() > 1 {
                return Err(CliError::usage("multiple IPv4 subnets are not supported yet").engine());
            }
            if !a.gateway.is_empty() && a.subnet.is_empty() {
                return Err(CliError::usage("every ip-range or gateway must have a corresponding subnet"));
            }
            if let Some(d) = a.ipam_driver.as_deref().filter(|d| *d != "default") {
                return Err(CliError::usage(format!("plugin \"{d}\" not found")).engine());
            }
            // The CLI checks the gateway is in the subnet before asking the daemon.
            if let (Some(s), Some(g)) = (a.subnet.first(), a.gateway.first()) {
                if let (Ok(sub), Ok(gw)) = (strata_network::Subnet::parse(s), g.parse()) {
                    if !sub.contains(gw) {
                        return Err(CliError::usage(format!("no matching subnet for gateway {g}")));
                    }
                }
            }
            let n = store.create(&CreateNetwork {
                name: a.name.clone(),
                driver: a.driver.clone(),
                subnet: a.subnet.first().cloned(),
                gateway: a.gateway.first().cloned(),
                ip_range: a.ip_range.first().cloned(),
                internal: a.internal,
                attachable: a.attachable,
                ipv6: a.ipv6,
                labels: pairs(&a.labels),
                options: pairs(&a.opts),
            })?;
            println!("{}", n.id);
            Ok(0)
        }
        NetworkCommand::Ls(a) => {
            let filters = parse_filters(&a.filters)?;
            let mut nets = Vec::new();
            for n in store.list()? {
                if matches(engine, &n, &filters)? {
                    nets.push(n);
                }
            }
            // The docker CLI lists networks by name, in natural order.
            nets.sort_by(|x, y| format::ports::natural_cmp(&x.name, &y.name));
            let rows: Vec<Value> = nets
                .iter()
                .map(|n| {
                    let (secs, nanos) = rfc3339_parts(&n.created);
                    json!({
                        "CreatedAt": format::units::go_time(secs, nanos),
                        "Driver": n.driver,
                        "ID": if a.no_trunc { n.id.clone() } else { n.id[..12].to_string() },
                        "IPv6": n.ipv6.to_string(),
                        "Internal": n.internal.to_string(),
                        "Labels": n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
                        "Name": n.name,
                        "Scope": "local",
                    })
                })
                .collect();
            let spec = ListFormat {
                default_table: "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
                headers: &[("ID", "NETWORK ID"), ("Name", "NAME"), ("Driver", "DRIVER"), ("Scope", "SCOPE"), ("IPv6", "IPV6"), ("Internal", "INTERNAL"), ("Labels", "LABELS"), ("CreatedAt", "CREATED AT")],
            };
            super::print_list(a.quiet, a.format.as_deref(), &spec, &rows)
        }
        NetworkCommand::Inspect { format, names, .. } => {
            let mut found = Vec::new();
            let mut errors = Vec::new();
            for n in &names {
                match store.get(n) {
                    Ok(net) => found.push(engine.network_inspect(&net)),
                    Err(e) => errors.push(CliError::from(e)),
                }
            }
            print!("{}", format::render_inspect(format.as_deref(), &found).map_err(|e| CliError::usage(e.to_string()))?);
            let code = if errors.is_empty() { 0 } else { 1 };
            for e in errors {
                e.print();
            }
            Ok(code)
        }
        NetworkCommand::Rm { force, names } => {
            let mut code = 0;
            for name in &names {
                match engine.remove_network(name) {
                    Ok(()) => println!("{name}"),
                    Err(strata_engine::EngineError::Network(strata_network::NetworkError::NotFound(_))) if force => {}
                    Err(e) => {
                        CliError::from(e).print();
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        NetworkCommand::Prune { force, filters } => {
            if !force && super::image::stdin_is_tty() {
                print!("WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] ");
                std::io::Write::flush(&mut std::io::stdout()).ok();
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).ok();
                if !matches!(line.trim(), "y" | "Y" | "yes") {
                    return Ok(0);
                }
            }
            let mut labels = Vec::new();
            for f in parse_filters(&filters)? {
                match f.0.as_str() {
                    "label" | "label!" => labels.push(f),
                    "until" => {}
                    k => return Err(invalid_filter(k)),
                }
            }
            let removed = engine.prune_networks(|n| {
                !labels.iter().all(|(k, v)| {
                    let has = match v.split_once('=') {
                        Some((lk, lv)) => n.labels.get(lk).map(String::as_str) == Some(lv),
                        None => n.labels.contains_key(v.as_str()),
                    };
                    if k == "label" { has } else { !has }
                })
            })?;
            if !removed.is_empty() {
                println!("Deleted Networks:");
                for n in &removed {
                    println!("{n}");
                }
                println!();
            }
            Ok(0)
        }
        NetworkCommand::Connect { aliases, ip, network, container } => {
            engine.connect_network(&network, &container, &aliases, ip.as_deref())?;
            Ok(0)
        }
        NetworkCommand::Disconnect { network, container, .. } => {
            engine.disconnect_network(&network, &container)?;
            Ok(0)
        }
    }
}

/// Seconds and nanoseconds of an RFC 3339 time.
fn rfc3339_parts(s: &str) -> (i64, u32) {
    chrono::DateTime::parse_from_rfc3339(s).map(|d| (d.timestamp(), d.timestamp_subsec_nanos())).unwrap_or((0, 0))
}

/// `port CONTAINER [PRIVATE_PORT[/PROTO]]`, as the docker CLI prints it.
pub fn port(engine: &Engine, a: PortArgs) -> Result<u8, CliError> {
    let c = engine.container(&a.container)?;
    let ports = engine.container_ports(&c);
    let frontends = |v: &Value| -> Vec<(String, String)> {
        v.as_array().into_iter().flatten().map(|b| (b["HostIp"].as_str().unwrap_or("").to_string(), b["HostPort"].as_str().unwrap_or("").to_string())).collect()
    };
    let join = |ip: &str, port: &str| if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") };
    let mut out: Vec<String> = Vec::new();
    if let Some(p) = &a.port {
        let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
        num.parse::<u16>().map_err(|e| CliError::usage(format!("invalid port ({num}): strconv.ParseUint: parsing \"{num}\": {}", go_parse_error(&e))))?;
        let fs = ports.get(&format!("{num}/{proto}")).map(frontends).unwrap_or_default();
        if fs.is_empty() {
            return Err(CliError::usage(format!("no public port '{p}' published for {}", a.container)));
        }
        out.extend(fs.iter().map(|(ip, hp)| join(ip, hp)));
    } else {
        for (k, v) in &ports {
            out.extend(frontends(v).iter().map(|(ip, hp)| format!("{k} -> {}", join(ip, hp))));
        }
    }
    out.sort_by(|x, y| format::ports::natural_cmp(x, y));
    if !out.is_empty() {
        println!("{}", out.join("\n"));
    }
    Ok(0)
}

fn go_parse_error(e: &std::num::ParseIntError) -> &'static str {
    match e.kind() {
        std::num::IntErrorKind::PosOverflow => "value out of range",
        _ => "invalid syntax",
    }
}
