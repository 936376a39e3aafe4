//! Networks as docker shows and manages them: inspect JSON (Engine API 1.51), prune.

use serde_json::{json, Map, Value};
use strata_network::Network;

use crate::{Engine, Result};

impl Engine {
    /// `network inspect` JSON, in docker 28's field order; `Containers` lists the
    /// running members.
    pub fn network_inspect(&self, n: &Network) -> Value {
        let mut containers = Map::new();
        for ep in self.networks.store().endpoints_on(&n.id).unwrap_or_default().into_iter().filter(|e| e.live()) {
            let Ok(Some(c)) = self.find_container(&ep.container_id) else { continue };
            let prefix = n.subnet.map(|s| s.prefix).unwrap_or(0);
            containers.insert(
                c.id.clone(),
                json!({
                    "Name": c.name,
                    "EndpointID": ep.endpoint_id,
                    "MacAddress": ep.mac,
                    "IPv4Address": format!("{}/{prefix}", ep.ip),
                    "IPv6Address": "",
                }),
            );
        }
        json!({
            "Name": n.name,
            "Id": n.id,
            "Created": n.created,
            "Scope": "local",
            "Driver": n.driver,
            "EnableIPv4": true,
            "EnableIPv6": n.ipv6,
            "IPAM": { "Driver": "default", "Options": n.ipam_options, "Config": n.ipam_config },
            "Internal": n.internal,
            "Attachable": n.attachable,
            "Ingress": false,
            "ConfigFrom": { "Network": "" },
            "ConfigOnly": false,
            "Containers": containers,
            "Options": n.options,
            "Labels": n.labels,
        })
    }

    /// `network rm`.
    pub fn remove_network(&self, name: &str) -> Result<()> {
        let n = self.networks.store().get(name)?;
        Ok(self.networks.remove_network(&n, &strata_network::SameMounts)?)
    }

    /// `network prune`: user networks without a running member (the attachments of
    /// stopped containers go with them, as docker's). Returns the removed names.
    pub fn prune_networks(&self, keep: impl Fn(&Network) -> bool) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for n in self.networks.store().list()? {
            if n.predefined() || keep(&n) {
                continue;
            }
            if self.networks.remove_network(&n, &strata_network::SameMounts).is_ok() {
                out.push(n.name);
            }
        }
        Ok(out)
    }
}
