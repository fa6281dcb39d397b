// Docker HEALTHCHECK of a Tokenmesh image: GET /healthz on the service's ops port (the gateway's HTTP port), the
// port read from the same variables and defaults as the service's config.ts. Exit 0 healthy, 1 not.
const service = process.env.TOKENMESH_SERVICE ?? "";
const ports = {
  gateway: ["GATEWAY_HTTP_PORT", 8080],
  guard: ["GUARD_OPS_PORT", 9102],
  router: ["ROUTER_OPS_PORT", 9103],
  inference: ["INFERENCE_OPS_PORT", 9104],
  cost: ["COST_OPS_PORT", 9105],
};
const entry = ports[service];
if (!entry) {
  console.error(`healthcheck: unknown TOKENMESH_SERVICE ${JSON.stringify(service)}`);
  process.exit(1);
}
const port = process.env[entry[0]] || entry[1];
try {
  const res = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(2500) });
  process.exit(res.ok ? 0 : 1);
} catch (err) {
  console.error(`healthcheck: ${err.message}`);
  process.exit(1);
}
