// Module resolution hook (see ./register.mjs): only the gateway's import of its router client is redirected.
const client = new URL("./router.client.mjs", import.meta.url).href;

export async function resolve(specifier, context, next) {
  if (specifier === "./adapters/router.client.js" && context.parentURL?.endsWith("/services/gateway/dist/app.js")) {
    return { url: client, shortCircuit: true };
  }
  return next(specifier, context);
}
