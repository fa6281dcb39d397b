export { abortedError, afterLinger, raceAbort, sleep, throwIfAborted } from "./abort.js";
export { ConfigError, commonEnv, env, parseEnv } from "./config.js";
export * from "./errors.js";
export { type CallParams, callStream, callUnary, createGrpcClient, createSharedStreams } from "./grpc-client.js";
export { ERROR_DETAIL_KEY, fromGrpcError, grpcStatusOf, PEER_UNREACHABLE, toGrpcStatus } from "./grpc-errors.js";
export {
  DRAINING,
  Multiplexed,
  MuxClient,
  type MuxClientOptions,
  type MuxRequestFrame,
  type MuxResponseFrame,
} from "./grpc-mux.js";
export {
  type BidiHandler,
  type CallContext,
  GrpcServer,
  type GrpcServerOptions,
  type HandlerFor,
  type Handlers,
  type ServerStreamHandler,
  type UnaryHandler,
} from "./grpc-server.js";
export { type OpenAIErrorBody, toHttpError } from "./http-errors.js";
export { Lifecycle, ShutdownPhase } from "./lifecycle.js";
export { type OpsServer, type OpsServerOptions, type ReadinessCheck, runChecks, startOpsServer } from "./ops-server.js";
export { type App, type AppDeps, runMain, ServiceHost, type ServiceHostOptions } from "./service.js";
