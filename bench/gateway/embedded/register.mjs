// Bench only (`run.mjs --embedded-router`, `floor.mjs --variants mesh-embedded`): not a supported way to run the mesh.
// Imported into the gateway's process (`node --import`), it makes the gateway's `./adapters/router.client.js`
// resolve to ./router.client.mjs, which runs the router's own app in the gateway's process and calls its Route
// handler directly: the mesh with no internal hop for remote models, to measure what the one gRPC hop costs.
import { register } from "node:module";

register("./hooks.mjs", import.meta.url);
