/**
 * The messages between a cluster's primary and its workers (over Node's IPC
 * channel, JSON). The worker speaks first (`hello`), so nothing the primary
 * sends can arrive before the worker listens. A request carries an `id` its
 * reply repeats.
 *
 * primary -> worker: start, request (metrics, evict, prepare, commit, abort), stop
 * worker -> primary: hello, serving, failed, reply
 */
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { SharedEviction } from '../introspection/introspector.js';

/** The prom-client JSON of one registry, as getMetricsAsJSON() gives it. */
export type MetricsJson = Array<MetricObjectWithValues<MetricValue<string>>>;

export interface Start {
  type: 'start';
  /** 1..workers: the worker's place, kept across restarts (log field and metrics label `worker`). */
  slot: number;
  /** The configuration file's text, as the primary validated it, and its path (for messages). */
  text: string;
  source: string;
  /** Environment overrides that keep every worker on the primary's gRPC address. */
  pin: Record<string, string>;
}

export type Request =
  | { type: 'metrics' }
  /** announce: this worker tells the other replicas (Redis); one worker per eviction does, the others only drop and remember. */
  | { type: 'evict'; token: string; announce: boolean }
  | { type: 'evict'; all: true; announce: boolean }
  /** Parse and hold a new configuration; nothing changes until commit. */
  | { type: 'prepare'; text: string; source: string }
  | { type: 'commit' }
  | { type: 'abort' };

export type ToWorker = Start | { type: 'request'; id: number; request: Request } | { type: 'stop' };

export type Reply =
  | { ok: true; metrics: MetricsJson }
  | { ok: true; evicted: number; shared: SharedEviction }
  | { ok: true }
  | { ok: false; error: string };

export type FromWorker =
  | { type: 'hello' }
  /** port: the gRPC port; httpPort: the HTTP authorization port, null when server.http is off. */
  | { type: 'serving'; port: number; httpPort: number | null }
  /** Start-up failed: the line for stderr, and the exit code the process ends with. */
  | { type: 'failed'; message: string; exitCode: number }
  | { type: 'reply'; id: number; reply: Reply };

/** Messages on the channel that are not ours (Node's own, prom-client's) are left alone. */
export function isFromWorker(message: unknown): message is FromWorker {
  const type = (message as { type?: unknown } | null)?.type;
  return type === 'hello' || type === 'serving' || type === 'failed' || type === 'reply';
}

export function isToWorker(message: unknown): message is ToWorker {
  const type = (message as { type?: unknown } | null)?.type;
  return type === 'start' || type === 'request' || type === 'stop';
}
