export { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
export type { NatsConnection } from "@nats-io/transport-node";
export { type ConnectNatsOptions, connectNats } from "./connection.js";
export { type ConsumeOptions, consumeEvents, type Delivery, type EventConsumer } from "./consumer.js";
export { natsReadiness } from "./health.js";
export {
  EventPublisher,
  type EventPublisherOptions,
  type JournalRecord,
  OutboxFullError,
  type OutboxJournal,
  publishEvent,
} from "./publisher.js";
export { type JournalRedis, RedisOutboxJournal } from "./redis-journal.js";
export { JetStreamAcks, type StreamPublish, type StreamPublishOptions } from "./stream-acks.js";
export { ensureStreams, StreamSpecs } from "./streams.js";
export {
  AuditTrailEvent,
  BudgetThresholdEvent,
  deadLetterSubject,
  decodeEvent,
  type EventType,
  encodeEvent,
  GuardDecisionEvent,
  JobCallbackEvent,
  JobSubmittedEvent,
  type JsonCodec,
  jobUpdatedSubject,
  Subjects,
  UsageRecordedEvent,
  UsageServedBatchEvent,
  UsageServedEvent,
} from "./subjects.js";
