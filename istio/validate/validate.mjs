// Offline validation of Sluice's Istio deployment (`node istio/validate/validate.mjs REPO_ROOT`).
//
// Renders istio/ with `kubectl kustomize` (no cluster needed) and checks every rendered object
// against the schemas generated from Istio's CRDs (@kubernetes-models/istio, Istio 1.29) and
// Kubernetes' OpenAPI (kubernetes-models); then checks what ties the objects together (judge
// cluster name, plugin configuration equal to the Envoy one, TLS origination for each provider),
// and has real Envoy load the filter (build/sluice_filter.wasm) with the WasmPlugin's pluginConfig.
// Finally it feeds broken copies to the same checks, so a validator that accepts anything fails.

import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { isDeepStrictEqual } from "node:util";
import yaml from "js-yaml";

const root = path.resolve(process.argv[2] ?? ".");
const problems = [];
const fail = (what, why) => problems.push(`${what}: ${why}`);
const name = (o) => `${o?.kind}/${o?.metadata?.namespace ?? "-"}/${o?.metadata?.name}`;

/** The model class for an object's apiVersion and kind, or an error naming what is missing. */
async function modelFor(obj) {
  const [group, version] = obj.apiVersion.includes("/")
    ? obj.apiVersion.split("/")
    : ["", obj.apiVersion];
  const spec = group.endsWith(".istio.io")
    ? `@kubernetes-models/istio/${group}/${version}/${obj.kind}`
    : group === ""
      ? `kubernetes-models/${version}/${obj.kind}`
      : `kubernetes-models/${group}/${version}/${obj.kind}`;
  const mod = await import(spec);
  const Model = mod[obj.kind] ?? mod.default;
  if (!Model) throw new Error(`no model ${obj.kind} in ${spec}`);
  return Model;
}

/** Schema errors of one object, as a string, or null when it is valid. */
async function schemaError(obj) {
  try {
    const Model = await modelFor(obj);
    new Model(obj).validate();
    return null;
  } catch (e) {
    return String(e.message ?? e).slice(0, 2000);
  }
}

/** Sluice's own consistency rules over the rendered set. */
function crossChecks(objs, envoyConfig, report) {
  const of = (kind) => objs.filter((o) => o.kind === kind);
  const plugins = of("WasmPlugin");
  if (plugins.length !== 1) report("WasmPlugin", `expected one, found ${plugins.length}`);
  const judgeSvc = of("Service").find((s) => s.metadata.name === "judge");
  if (!judgeSvc) report("Service judge", "missing");
  for (const p of plugins) {
    const spec = p.spec ?? {};
    if (!/^[0-9a-f]{64}$/.test(spec.sha256 ?? "")) report(name(p), "sha256 is not 64 hex digits");
    if (!String(spec.url ?? "").startsWith("oci://")) report(name(p), "url is not oci://");
    if (!spec.failStrategy) report(name(p), "failStrategy must be set explicitly");
    const modes = (spec.match ?? []).map((m) => m.mode);
    if (!modes.includes("CLIENT")) report(name(p), "no match with mode CLIENT (outbound)");
    const ports = (spec.match ?? []).flatMap((m) => (m.ports ?? []).map((x) => x.number));
    if (!ports.includes(80)) report(name(p), "match does not cover port 80 (cleartext leg)");
    const cfg = spec.pluginConfig ?? {};
    // The judge's cluster name differs by design (Envoy's static `judge` vs Istio's outbound one).
    const { judge, ...rest } = cfg;
    const { judge: envoyJudge, ...envoyRest } = envoyConfig;
    if (!isDeepStrictEqual(rest, envoyRest))
      report(name(p), "pluginConfig (without judge) differs from envoy/envoy.yaml's configuration");
    if (envoyJudge && judge && (judge.timeout_ms !== envoyJudge.timeout_ms || judge.failure !== envoyJudge.failure))
      report(name(p), "pluginConfig.judge timeout_ms/failure differ from envoy/envoy.yaml's");
    if (judgeSvc) {
      const grpc = (judgeSvc.spec.ports ?? []).find((x) => x.name === "grpc");
      const want = `outbound|${grpc?.port}||${judgeSvc.metadata.name}.${judgeSvc.metadata.namespace}.svc.cluster.local`;
      if (judge?.cluster !== want) report(name(p), `judge.cluster is ${judge?.cluster}, want ${want}`);
      if (grpc?.appProtocol !== "grpc") report(name(judgeSvc), "port grpc lacks appProtocol grpc");
    }
    if (!["open", "closed"].includes(judge?.failure)) report(name(p), "judge.failure must be open or closed");
    if (!(Number.isInteger(judge?.timeout_ms) && judge.timeout_ms > 0))
      report(name(p), "judge.timeout_ms must be a positive integer");
  }
  // The sidecars' stats tags are the Envoy config's, for the pods the plugin runs in.
  const envoyTags = yaml.load(readFileSync(path.join(root, "envoy/envoy.yaml"), "utf8")).stats_config?.stats_tags;
  const tagFilters = of("EnvoyFilter").filter((f) => f.metadata.name === "sluice-stats-tags");
  if (tagFilters.length !== 1) report("EnvoyFilter sluice-stats-tags", `expected one, found ${tagFilters.length}`);
  for (const f of tagFilters) {
    const patch = (f.spec.configPatches ?? []).find((p) => p.applyTo === "BOOTSTRAP");
    if (!isDeepStrictEqual(patch?.patch?.value?.stats_config?.stats_tags, envoyTags))
      report(name(f), "stats_tags differ from envoy/envoy.yaml's stats_config.stats_tags");
    const want = plugins[0]?.spec?.selector?.matchLabels;
    if (!isDeepStrictEqual(f.spec.workloadSelector?.labels, want))
      report(name(f), "workloadSelector differs from the WasmPlugin's selector");
  }
  // Every provider reachable on cleartext port 80 must leave the mesh as TLS.
  const drs = of("DestinationRule");
  for (const se of of("ServiceEntry")) {
    const http80 = (se.spec.ports ?? []).some((x) => x.number === 80);
    if (!http80) continue;
    for (const host of se.spec.hosts ?? []) {
      const ok = drs.some(
        (dr) =>
          dr.spec.host === host &&
          (dr.spec.trafficPolicy?.portLevelSettings ?? []).some(
            (s) => s.port?.number === 80 && s.tls?.mode === "SIMPLE" && s.tls?.sni === host,
          ),
      );
      if (!ok) report(`${name(se)} ${host}`, "port 80 without a SIMPLE TLS DestinationRule (would leave in cleartext)");
    }
  }
  // Probes must point at a declared container port.
  for (const d of [...of("Deployment"), ...of("DaemonSet")]) {
    for (const c of d.spec.template.spec.containers ?? []) {
      const declared = new Set((c.ports ?? []).flatMap((x) => [x.containerPort, x.name]));
      for (const probe of [c.readinessProbe, c.livenessProbe].filter(Boolean)) {
        const port = probe.grpc?.port ?? probe.httpGet?.port ?? probe.tcpSocket?.port;
        if (port !== undefined && !declared.has(port))
          report(`${name(d)} ${c.name}`, `probe port ${port} is not a container port`);
      }
    }
  }
}

function envoySluiceConfig() {
  const envoy = yaml.load(readFileSync(path.join(root, "envoy/envoy.yaml"), "utf8"));
  for (const l of envoy.static_resources.listeners) {
    for (const chain of l.filter_chains)
      for (const f of chain.filters)
        for (const h of f.typed_config?.http_filters ?? [])
          if (h.name === "sluice") return JSON.parse(h.typed_config.config.configuration.value);
  }
  throw new Error("envoy/envoy.yaml has no http filter named sluice");
}

/** The rendered kustomization; without kubectl, its resource files as they are (no labels). */
function render() {
  const dir = path.join(root, "istio");
  try {
    return execFileSync("kubectl", ["kustomize", dir], { encoding: "utf8" });
  } catch (e) {
    if (e.code !== "ENOENT") throw e;
    console.error("istio: kubectl not found; reading the kustomization's resources without kustomize");
    const k = yaml.load(readFileSync(path.join(dir, "kustomization.yaml"), "utf8"));
    return k.resources.map((r) => readFileSync(path.join(dir, r), "utf8")).join("\n---\n");
  }
}

const objs = yaml.loadAll(render()).filter((o) => o !== null && o !== undefined);
const envoyConfig = envoySluiceConfig();

for (const o of objs) {
  const err = await schemaError(o);
  if (err) fail(name(o), err);
}
crossChecks(objs, envoyConfig, fail);

/**
 * Runs `envoy --mode validate` on envoy/envoy.yaml with the WasmPlugin's pluginConfig in place of
 * the filter's configuration and the judge's Istio cluster name added: validation loads the
 * module and runs its on_configure, so the real filter parses the Istio settings. Null when
 * Envoy accepts them, else Envoy's complaint.
 */
function envoyRejects(pluginConfig) {
  const envoy = yaml.load(readFileSync(path.join(root, "envoy/envoy.yaml"), "utf8"));
  for (const l of envoy.static_resources.listeners)
    for (const chain of l.filter_chains)
      for (const f of chain.filters)
        for (const h of f.typed_config?.http_filters ?? [])
          if (h.name === "sluice") {
            h.typed_config.config.configuration.value = JSON.stringify(pluginConfig);
            h.typed_config.config.vm_config.code.local.filename = path.join(root, "build/sluice_filter.wasm");
          }
  const judge = pluginConfig.judge?.cluster;
  if (judge)
    envoy.static_resources.clusters.push({
      name: judge,
      type: "STATIC",
      connect_timeout: "1s",
      typed_extension_protocol_options: {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
          "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
          explicit_http_config: { http2_protocol_options: {} },
        },
      },
      load_assignment: {
        cluster_name: judge,
        endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: 50051 } } } }] }],
      },
    });
  const dir = mkdtempSync(path.join(os.tmpdir(), "sluice-istio-"));
  const file = path.join(dir, "envoy.json");
  writeFileSync(file, JSON.stringify(envoy));
  try {
    const bin = execFileSync(path.join(root, "scripts/envoy-bin"), { encoding: "utf8" }).trim();
    execFileSync(bin, ["--mode", "validate", "-c", file, "--log-level", "warn"], { encoding: "utf8", stdio: "pipe" });
    return null;
  } catch (e) {
    return `${e.message}\n${e.stdout ?? ""}${e.stderr ?? ""}`.split("\n").slice(-12).join("\n");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const plugin = objs.find((o) => o.kind === "WasmPlugin");
const envoyChecks = process.env.SLUICE_ISTIO_SKIP_ENVOY !== "1";
if (plugin && envoyChecks) {
  const err = envoyRejects(plugin.spec.pluginConfig ?? {});
  if (err) fail(`${name(plugin)} pluginConfig in Envoy`, err);
  const broken = structuredClone(plugin.spec.pluginConfig ?? {});
  broken.judge = { ...broken.judge, timeout_ms: 0 };
  const why = envoyRejects(broken);
  if (process.env.SLUICE_ISTIO_VERBOSE) console.error(why);
  if (!why?.includes("judge.timeout_ms"))
    fail("self-test", "Envoy did not refuse a pluginConfig with judge.timeout_ms 0 for that reason");
}

// Self-test: each broken copy must be rejected, by the schema or by the cross checks.
const clone = (x) => structuredClone(x);
const mutants = [
  ["failStrategy FAIL_SOMETIMES", (os) => (os.find((o) => o.kind === "WasmPlugin").spec.failStrategy = "FAIL_SOMETIMES")],
  ["phase BEFORE_ROUTER", (os) => (os.find((o) => o.kind === "WasmPlugin").spec.phase = "BEFORE_ROUTER")],
  ["ServiceEntry resolution MAGIC", (os) => (os.find((o) => o.kind === "ServiceEntry").spec.resolution = "MAGIC")],
  ["Service port as string", (os) => (os.find((o) => o.kind === "Service").spec.ports[0].port = "grpc")],
  ["Deployment replicas as string", (os) => (os.find((o) => o.kind === "Deployment").spec.replicas = "two")],
  ["judge cluster of the Envoy demo", (os) => (os.find((o) => o.kind === "WasmPlugin").spec.pluginConfig.judge.cluster = "judge")],
  ["pluginConfig drifted from envoy.yaml", (os) => (os.find((o) => o.kind === "WasmPlugin").spec.pluginConfig.pii = { action: "alert" })],
  ["stats tags drifted from envoy.yaml", (os) => os.find((o) => o.kind === "EnvoyFilter").spec.configPatches[0].patch.value.stats_config.stats_tags.pop()],
  ["provider without TLS origination", (os) => os.splice(os.findIndex((o) => o.kind === "DestinationRule" && o.spec.host === "api.openai.com"), 1)],
];
if (plugin) {
  for (const [label, mutate] of mutants) {
    const copy = clone(objs);
    mutate(copy);
    const found = [];
    for (const o of copy) if (await schemaError(o)) found.push(name(o));
    crossChecks(copy, envoyConfig, (what) => found.push(what));
    if (found.length === 0) fail("self-test", `a broken copy (${label}) was accepted`);
  }
}

const kinds = {};
for (const o of objs) kinds[o.kind] = (kinds[o.kind] ?? 0) + 1;
if (problems.length) {
  for (const p of problems) console.error(`istio: ${p}`);
  process.exit(1);
}
console.log(
  `istio: ${objs.length} objects valid (${Object.entries(kinds).map(([k, n]) => `${n} ${k}`).join(", ")}); ` +
    `${mutants.length} broken copies rejected; ` +
    (envoyChecks ? "Envoy loads the filter with pluginConfig and refuses a broken one" : "Envoy check skipped"),
);
