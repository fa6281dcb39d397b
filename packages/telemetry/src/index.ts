export {
  type ClientCall,
  clientInterceptor,
  metadataGetter,
  splitMethod,
  startClientCall,
  statusName,
} from "./grpc.js";
export { contextFromHeaders, injectHeaders, type TracedListenerOptions, tracedRequestListener } from "./http.js";
export { type CreateLoggerOptions, createLogger, type Logger } from "./logger.js";
export {
  collectProcessMetrics,
  counter,
  gauge,
  genAiMetrics,
  histogram,
  LATENCY_BUCKETS,
  registry,
  rpcMetrics,
  TOKEN_BUCKETS,
} from "./metrics.js";
export { startTelemetry, stopTelemetry } from "./sdk.js";
export * from "./tracing.js";
