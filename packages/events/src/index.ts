export { connectNats, type ConnectNatsOptions } from "./connection.js";
export { consumeEvents, type ConsumeOptions, type Delivery, type EventConsumer } from "./consumer.js";
export { EventPublisher, type EventPublisherOptions, OutboxFullError } from "./publisher.js";
export { ensureStreams, StreamSpecs } from "./streams.js";
export {
  BudgetThresholdEvent,
  deadLetterSubject,
  decodeEvent,
  encodeEvent,
  type EventType,
  GuardDecisionEvent,
  type JsonCodec,
  JobSubmittedEvent,
  Subjects,
  UsageRecordedEvent,
} from "./subjects.js";
export { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
export type { NatsConnection } from "@nats-io/transport-node";
export { natsReadiness } from "./health.js";
