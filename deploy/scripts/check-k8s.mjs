#!/usr/bin/env node
// Offline Kubernetes checks of the kustomize overlays, without a cluster:
//   1. builds each overlay (`kubectl kustomize`, or `kustomize build` when kubectl is missing);
//   2. validates every object against the Kubernetes OpenAPI schemas (kubernetes-models' compiled validators: types,
//      required fields, enums, formats) plus a strict check of unknown fields where typos hurt most (object top
//      level, metadata, pod spec, containers, probes);
//   3. checks the deployment rules of this repo: requests and limits, /readyz + /healthz probes on named ports,
//      preStop + terminationGracePeriodSeconds covering SHUTDOWN_TIMEOUT_MS, gRPC ports with appProtocol, every
//      reference (ConfigMap, Secret, HPA/PDB/Service/NetworkPolicy selectors and targets) resolving, default-deny
//      ingress with only the gateway open to all, all five services present.
// Usage: check-k8s.mjs [--external-secret NAME]... OVERLAY_DIR...   |   check-k8s.mjs --manifest FILE.yaml
// Exits 1 listing every problem, 0 when all overlays pass.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../..");
const require = createRequire(join(here, "../tools/package.json"));
const YAML = require("yaml");

const SERVICES = ["gateway", "guard", "router", "inference", "cost"];
const PRESTOP_MARGIN_S = 1;

const args = process.argv.slice(2);
const externalSecrets = new Set();
const overlays = [];
const manifests = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--external-secret") externalSecrets.add(args[++i]);
  else if (args[i] === "--manifest") manifests.push(args[++i]);
  else overlays.push(args[i]);
}
if (overlays.length === 0 && manifests.length === 0) {
  console.error("usage: check-k8s.mjs [--external-secret NAME]... OVERLAY_DIR... | --manifest FILE.yaml");
  process.exit(2);
}

function build(dir) {
  const tries = [
    ["kubectl", ["kustomize", dir]],
    ["kustomize", ["build", dir]],
  ];
  for (const [cmd, argv] of tries) {
    const r = spawnSync(cmd, argv, { encoding: "utf8", maxBuffer: 64 << 20 });
    if (r.error?.code === "ENOENT") continue;
    if (r.status !== 0) return { error: `kustomize build failed:\n${r.stderr.trim()}` };
    return { text: r.stdout };
  }
  return { error: "neither kubectl nor kustomize is installed" };
}

// --- schema validation -------------------------------------------------------------------------------------------
const modelCache = new Map();
function modelFor(apiVersion, kind) {
  const key = `${apiVersion}/${kind}`;
  if (!modelCache.has(key)) {
    let model;
    try {
      model = require(`kubernetes-models/${apiVersion}/${kind}`)[kind];
    } catch {
      model = undefined;
    }
    modelCache.set(key, model);
  }
  return modelCache.get(key);
}

// Fields allowed where a misspelling would otherwise pass silently (the schemas do not forbid unknown fields).
const KNOWN = {
  top: ["apiVersion", "kind", "metadata", "spec", "data", "stringData", "binaryData", "type", "immutable"],
  metadata: [
    "name",
    "namespace",
    "labels",
    "annotations",
    "generateName",
    "finalizers",
    "ownerReferences",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
  ],
  podSpec: [
    "activeDeadlineSeconds",
    "affinity",
    "automountServiceAccountToken",
    "containers",
    "dnsConfig",
    "dnsPolicy",
    "enableServiceLinks",
    "ephemeralContainers",
    "hostAliases",
    "hostIPC",
    "hostNetwork",
    "hostPID",
    "hostUsers",
    "hostname",
    "imagePullSecrets",
    "initContainers",
    "nodeName",
    "nodeSelector",
    "os",
    "overhead",
    "preemptionPolicy",
    "priority",
    "priorityClassName",
    "readinessGates",
    "resourceClaims",
    "resources",
    "restartPolicy",
    "runtimeClassName",
    "schedulerName",
    "schedulingGates",
    "securityContext",
    "serviceAccount",
    "serviceAccountName",
    "setHostnameAsFQDN",
    "shareProcessNamespace",
    "subdomain",
    "terminationGracePeriodSeconds",
    "tolerations",
    "topologySpreadConstraints",
    "volumes",
  ],
  container: [
    "args",
    "command",
    "env",
    "envFrom",
    "image",
    "imagePullPolicy",
    "lifecycle",
    "livenessProbe",
    "name",
    "ports",
    "readinessProbe",
    "resizePolicy",
    "resources",
    "restartPolicy",
    "securityContext",
    "startupProbe",
    "stdin",
    "stdinOnce",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "tty",
    "volumeDevices",
    "volumeMounts",
    "workingDir",
  ],
  probe: [
    "exec",
    "failureThreshold",
    "grpc",
    "httpGet",
    "initialDelaySeconds",
    "periodSeconds",
    "successThreshold",
    "tcpSocket",
    "terminationGracePeriodSeconds",
    "timeoutSeconds",
  ],
};

function unknownKeys(obj, allowed, path, problems) {
  if (!obj || typeof obj !== "object") return;
  for (const k of Object.keys(obj)) if (!allowed.includes(k)) problems.push(`${path}: unknown field "${k}"`);
}

function podTemplate(obj) {
  if (["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"].includes(obj.kind)) return obj.spec?.template;
  return undefined;
}

function schemaProblems(obj) {
  const problems = [];
  const Model = modelFor(obj.apiVersion, obj.kind);
  if (!Model) return [`no Kubernetes schema for apiVersion ${obj.apiVersion} kind ${obj.kind}`];
  try {
    new Model(obj).validate();
  } catch (err) {
    problems.push(
      ...String(err.message)
        .split(", data")
        .map((m, i) => (i ? `data${m}` : m)),
    );
  }
  unknownKeys(obj, KNOWN.top, "", problems);
  unknownKeys(obj.metadata, KNOWN.metadata, "metadata", problems);
  const tpl = podTemplate(obj);
  if (tpl) {
    unknownKeys(tpl.metadata, KNOWN.metadata, "spec.template.metadata", problems);
    const spec = tpl.spec ?? {};
    unknownKeys(spec, KNOWN.podSpec, "spec.template.spec", problems);
    for (const [i, c] of [...(spec.containers ?? []), ...(spec.initContainers ?? [])].entries()) {
      const at = `container[${i}] ${c?.name ?? ""}`;
      unknownKeys(c, KNOWN.container, at, problems);
      for (const p of ["livenessProbe", "readinessProbe", "startupProbe"])
        unknownKeys(c?.[p], KNOWN.probe, `${at}.${p}`, problems);
    }
  }
  return problems;
}

// --- repo rules --------------------------------------------------------------------------------------------------
const matches = (selector, labels) =>
  !!selector && Object.entries(selector).every(([k, v]) => labels?.[k] === v) && Object.keys(selector).length > 0;

function policyProblems(objs, { requireAllServices }) {
  const out = [];
  const id = (o) => `${o.kind}/${o.metadata?.name}`;
  const byKind = (k) => objs.filter((o) => o.kind === k);
  const find = (kind, name) => objs.find((o) => o.kind === kind && o.metadata?.name === name);
  const workloads = objs.filter((o) => podTemplate(o));
  const configMaps = byKind("ConfigMap");

  for (const w of workloads) {
    const tpl = w.spec.template;
    const labels = tpl.metadata?.labels ?? {};
    if (w.kind !== "Job" && !matches(w.spec.selector?.matchLabels, labels))
      out.push(`${id(w)}: spec.selector.matchLabels does not match the pod template's labels`);
    const spec = tpl.spec ?? {};
    const isMesh = SERVICES.includes(labels["app.kubernetes.io/name"]) && w.kind === "Deployment";
    for (const c of spec.containers ?? []) {
      const at = `${id(w)} container ${c.name}`;
      for (const kind of ["requests", "limits"])
        for (const r of ["cpu", "memory"])
          if (c.resources?.[kind]?.[r] === undefined) out.push(`${at}: resources.${kind}.${r} is missing`);
      const portNames = new Set((c.ports ?? []).map((p) => p.name).filter(Boolean));
      for (const p of ["livenessProbe", "readinessProbe", "startupProbe"]) {
        const port = c[p]?.httpGet?.port;
        if (typeof port === "string" && !portNames.has(port))
          out.push(`${at}: ${p} uses port "${port}", not a named container port`);
      }
      // References to ConfigMaps and Secrets.
      const refs = [
        ...(c.envFrom ?? []).map((e) => (e.configMapRef ? ["ConfigMap", e.configMapRef] : ["Secret", e.secretRef])),
        ...(c.env ?? []).flatMap((e) =>
          e.valueFrom?.configMapKeyRef
            ? [["ConfigMap", e.valueFrom.configMapKeyRef]]
            : e.valueFrom?.secretKeyRef
              ? [["Secret", e.valueFrom.secretKeyRef]]
              : [],
        ),
      ];
      for (const [kind, ref] of refs) {
        if (!ref || ref.optional) continue;
        if (kind === "Secret" && externalSecrets.has(ref.name)) continue;
        const target = find(kind, ref.name);
        if (!target) out.push(`${at}: references ${kind} "${ref.name}", which is not in the build`);
        else if (ref.key && !(ref.key in (target.data ?? {})) && !(ref.key in (target.stringData ?? {})))
          out.push(`${at}: ${kind} "${ref.name}" has no key "${ref.key}"`);
      }
      if (!isMesh) continue;
      const name = labels["app.kubernetes.io/name"];
      const opsPort = name === "gateway" ? "http" : "ops";
      if (!portNames.has("grpc") || !portNames.has(opsPort))
        out.push(`${at}: needs container ports named grpc and ${opsPort}`);
      if (c.readinessProbe?.httpGet?.path !== "/readyz" || c.readinessProbe?.httpGet?.port !== opsPort)
        out.push(`${at}: readinessProbe must be GET /readyz on port ${opsPort}`);
      if (c.livenessProbe?.httpGet?.path !== "/healthz" || c.livenessProbe?.httpGet?.port !== opsPort)
        out.push(`${at}: livenessProbe must be GET /healthz on port ${opsPort}`);
      const cmd = c.lifecycle?.preStop?.exec?.command ?? [];
      const sleep = c.lifecycle?.preStop?.sleep?.seconds ?? (cmd[0] === "sleep" ? Number(cmd[1]) : undefined);
      if (!(sleep > 0)) out.push(`${at}: lifecycle.preStop must sleep a few seconds (exec ["sleep", "N"] or sleep)`);
      // The shutdown deadline, from the container's env or the ConfigMaps it loads.
      let shutdownMs = 4000;
      for (const e of c.envFrom ?? []) {
        const cm = e.configMapRef && find("ConfigMap", e.configMapRef.name);
        if (cm?.data?.SHUTDOWN_TIMEOUT_MS) shutdownMs = Number(cm.data.SHUTDOWN_TIMEOUT_MS);
      }
      const direct = (c.env ?? []).find((e) => e.name === "SHUTDOWN_TIMEOUT_MS");
      if (direct?.value) shutdownMs = Number(direct.value);
      const grace = spec.terminationGracePeriodSeconds ?? 30;
      const needed = Math.max(10, (sleep || 0) + Math.ceil(shutdownMs / 1000) + PRESTOP_MARGIN_S);
      if (grace < needed)
        out.push(
          `${at}: terminationGracePeriodSeconds ${grace} < preStop ${sleep || 0}s + SHUTDOWN_TIMEOUT_MS ${shutdownMs}ms + ${PRESTOP_MARGIN_S}s (need >= ${needed})`,
        );
    }
    for (const v of spec.volumes ?? []) {
      if (v.configMap && !v.configMap.optional && !find("ConfigMap", v.configMap.name))
        out.push(`${id(w)}: volume ${v.name} references ConfigMap "${v.configMap.name}", which is not in the build`);
      if (
        v.secret &&
        !v.secret.optional &&
        !externalSecrets.has(v.secret.secretName) &&
        !find("Secret", v.secret.secretName)
      )
        out.push(`${id(w)}: volume ${v.name} references Secret "${v.secret.secretName}", which is not in the build`);
    }
  }

  const podsMatching = (selector) => workloads.filter((w) => matches(selector, w.spec.template.metadata?.labels));
  for (const s of byKind("Service")) {
    const targets = podsMatching(s.spec?.selector);
    if (targets.length === 0) {
      out.push(`${id(s)}: selector matches no workload`);
      continue;
    }
    const containerPorts = targets.flatMap((w) => w.spec.template.spec.containers.flatMap((c) => c.ports ?? []));
    for (const p of s.spec.ports ?? []) {
      if (typeof p.targetPort === "string" && !containerPorts.some((cp) => cp.name === p.targetPort))
        out.push(`${id(s)}: port ${p.name} targets "${p.targetPort}", not a container port of its pods`);
      if (/grpc/.test(p.name ?? "") && !p.appProtocol) out.push(`${id(s)}: gRPC port ${p.name} needs appProtocol`);
    }
  }
  for (const h of byKind("HorizontalPodAutoscaler")) {
    const t = h.spec?.scaleTargetRef;
    if (!find(t?.kind, t?.name)) out.push(`${id(h)}: scaleTargetRef ${t?.kind}/${t?.name} is not in the build`);
    if ((h.spec?.minReplicas ?? 1) > h.spec?.maxReplicas) out.push(`${id(h)}: minReplicas > maxReplicas`);
  }
  for (const p of byKind("PodDisruptionBudget"))
    if (podsMatching(p.spec?.selector?.matchLabels).length === 0) out.push(`${id(p)}: selector matches no workload`);

  const policies = byKind("NetworkPolicy");
  if (
    !policies.some(
      (p) =>
        Object.keys(p.spec?.podSelector ?? {}).length === 0 &&
        (p.spec?.policyTypes ?? []).includes("Ingress") &&
        !p.spec?.ingress,
    )
  )
    out.push("no default-deny ingress NetworkPolicy (podSelector: {}, policyTypes: [Ingress], no rules)");
  for (const p of policies) {
    const sel = p.spec?.podSelector?.matchLabels;
    if (!sel) continue;
    const pods = podsMatching(sel);
    if (pods.length === 0) {
      out.push(`${id(p)}: podSelector matches no workload`);
      continue;
    }
    const portNames = new Set(
      pods.flatMap((w) => w.spec.template.spec.containers.flatMap((c) => (c.ports ?? []).map((x) => x.name))),
    );
    const isGateway = sel["app.kubernetes.io/name"] === "gateway";
    for (const rule of p.spec.ingress ?? []) {
      for (const port of rule.ports ?? [])
        if (typeof port.port === "string" && !portNames.has(port.port))
          out.push(`${id(p)}: port "${port.port}" is not a named port of the selected pods`);
      if (!rule.from && !isGateway) out.push(`${id(p)}: allows ingress from everywhere; only the gateway may`);
      for (const peer of rule.from ?? [])
        if (
          peer.podSelector?.matchLabels &&
          podsMatching(peer.podSelector.matchLabels).length === 0 &&
          !peer.namespaceSelector
        )
          out.push(
            `${id(p)}: allows a podSelector that matches no workload (${JSON.stringify(peer.podSelector.matchLabels)})`,
          );
    }
  }
  const deployments = byKind("Deployment");
  for (const d of deployments) {
    const labels = d.spec.template.metadata?.labels ?? {};
    if (!policies.some((p) => p.spec?.podSelector?.matchLabels && matches(p.spec.podSelector.matchLabels, labels)))
      out.push(`${id(d)}: no NetworkPolicy selects its pods`);
  }
  if (requireAllServices)
    for (const s of SERVICES) {
      if (!find("Deployment", s)) out.push(`Deployment/${s} is missing`);
      if (!find("Service", s)) out.push(`Service/${s} is missing`);
      if (!find("PodDisruptionBudget", s)) out.push(`PodDisruptionBudget/${s} is missing`);
    }
  void configMaps;
  return out;
}

// --- main --------------------------------------------------------------------------------------------------------
let failed = false;
const inputs = [
  ...overlays.map((dir) => ({ label: relative(repo, resolve(dir)) || dir, load: () => build(dir) })),
  ...manifests.map((f) => ({ label: f, load: () => ({ text: readFileSync(f, "utf8") }) })),
];
for (const input of inputs) {
  const { text, error } = input.load();
  const problems = [];
  let objs = [];
  if (error) problems.push(error);
  else {
    try {
      objs = YAML.parseAllDocuments(text)
        .map((d) => {
          if (d.errors.length) throw new Error(d.errors.map((e) => e.message).join("; "));
          return d.toJS();
        })
        .filter(Boolean);
    } catch (err) {
      problems.push(`not valid YAML: ${err.message}`);
    }
    for (const o of objs) for (const p of schemaProblems(o)) problems.push(`${o.kind}/${o.metadata?.name}: ${p}`);
    problems.push(...policyProblems(objs, { requireAllServices: overlays.length > 0 }));
  }
  if (problems.length) {
    failed = true;
    console.log(`FAIL ${input.label} (${objs.length} objects)`);
    for (const p of problems) console.log(`  - ${p}`);
  } else {
    const kinds = {};
    for (const o of objs) kinds[o.kind] = (kinds[o.kind] ?? 0) + 1;
    const summary = Object.entries(kinds)
      .map(([k, n]) => `${n} ${k}`)
      .join(", ");
    console.log(`ok   ${input.label}: ${objs.length} objects valid (${summary})`);
  }
}
process.exit(failed ? 1 : 0);
