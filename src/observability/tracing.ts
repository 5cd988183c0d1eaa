/**
 * OpenTelemetry tracing as the rest of the service sees it: a few small
 * interfaces, and the loader. With tracing.enabled false nothing here is
 * called and the SDK is never imported: every call site holds an undefined
 * and pays one check for it. No AsyncLocalStorage either way: a span's parent
 * is passed by hand (the Check's trace travels with the Check), so a request
 * that is not traced costs nothing at all and one that is costs its spans.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Decision } from '../decision.js';
import type { IntrospectionResult } from '../introspection/result.js';
import type { Logger } from './logger.js';

/** What the service holds while tracing is on (loaded by startTracing). */
export interface Tracing {
  /**
   * The span of one gRPC Check. Its parent is the context Envoy put in the
   * call's metadata (its ext_authz span, when Envoy traces), else the one in
   * the CheckRequest's own headers (the downstream request's), else none.
   */
  check(metadata: CallMetadata, headers: ReadonlyMap<string, readonly string[]> | undefined): RequestTrace;
  /** The span of one HTTP sub-request; the parent from its headers. */
  subRequest(method: string, headers: IncomingHttpHeaders): RequestTrace;
  /** A span of its own trace around a fetch of an issuer's key set or metadata (no Check waits on most of them). */
  keyFetch<T>(endpoint: string, fetch: () => Promise<T>): Promise<T>;
  /** Export what is queued, within `timeoutMs`, and stop. Never rejects. */
  shutdown(timeoutMs: number): Promise<void>;
}

/** The part of a grpc-js Metadata the parent is read from. */
export interface CallMetadata {
  get(key: string): Array<string | Buffer>;
}

/** One Check's (or sub-request's) span, and what its children need. */
export interface RequestTrace {
  /** The trace id when the span is sampled: the exemplar of the request's latency. */
  readonly traceId: string | undefined;
  /** A child span for one introspection call (per flight: only the Check that starts the call has it). */
  introspection(endpoint: string): FlightTrace;
  /** A child span around one shared cache (Redis) lookup. */
  lookup<T>(run: () => Promise<T>): Promise<T>;
  /** The answer is written: the decision's bounded attributes, and the end. */
  end(decision: Decision): void;
}

/** One call to an endpoint, its attempts as children. */
export interface FlightTrace {
  readonly traceId: string | undefined;
  /** A child span for one HTTP attempt (a retry is another). */
  attempt(method: string, resend: number): AttemptTrace;
  end(result: IntrospectionResult | undefined): void;
}

export interface AttemptTrace {
  /**
   * The W3C traceparent to send the endpoint: this attempt's context, when it
   * is sampled or the request came with a parent (so the authorization
   * server's spans join the request's trace, or follow its decision not to
   * sample); undefined otherwise: a trace nobody records is not announced.
   */
  readonly traceparent: string | undefined;
  status(code: number): void;
  end(result: IntrospectionResult): void;
}

export interface TracingOptions {
  logger: Pick<Logger, 'warn'>;
  /** Told of every failed export (a batch of spans lost). */
  onExportFailure?: () => void;
}

/** Load the SDK and start exporting; only ever called when tracing.enabled is true. */
export async function startTracing(options: TracingOptions): Promise<Tracing> {
  const { openTelemetryTracing } = await import('./otel-tracing.js');
  return openTelemetryTracing(options);
}
