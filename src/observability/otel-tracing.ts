/**
 * Tracing with the official OpenTelemetry SDK, loaded by tracing.ts only when
 * tracing.enabled is true. Spans go through a BatchSpanProcessor (bounded
 * queue: when full, new spans are dropped, never waited for) to the OTLP/HTTP
 * exporter. Everything the SDK reads from the standard environment it reads
 * itself: the sampler (OTEL_TRACES_SAMPLER, _ARG; default
 * parentbased_always_on), the batch sizes (OTEL_BSP_*), span limits, and the
 * exporter's endpoint, headers and timeout (OTEL_EXPORTER_OTLP_*). The service
 * name is ours unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say otherwise.
 */
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, TraceFlags, type Attributes, type Context, type Span, type Tracer } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import {
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_REQUEST_RESEND_COUNT,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_SERVICE_NAME,
  ATTR_SERVICE_VERSION,
} from '@opentelemetry/semantic-conventions';
import type { Decision } from '../decision.js';
import type { IntrospectionResult } from '../introspection/result.js';
import { VERSION } from '../version.js';
import { headerCarrier, metadataCarrier, nodeHeaderCarrier, parentContext, type TraceCarrier } from './trace-parent.js';
import type { AttemptTrace, FlightTrace, RequestTrace, Tracing, TracingOptions } from './tracing.js';

/** Least time between two log lines about failed exports: while the collector is down every batch fails. */
export const EXPORT_WARNING_MS = 60_000;

const SERVICE = 'envoy-introspection-authz';

export function openTelemetryTracing(options: TracingOptions): Tracing {
  const exporter = new CountingExporter(new OTLPTraceExporter(), exportFailureReporter(options));
  const resource = defaultResource()
    .merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: SERVICE, [ATTR_SERVICE_VERSION]: VERSION }))
    .merge(detectResources({ detectors: [envDetector] }));
  const provider = new BasicTracerProvider({ resource, spanProcessors: [new BatchSpanProcessor(exporter)] });
  const tracer = provider.getTracer(SERVICE, VERSION);
  let stopping: Promise<void> | undefined;

  return {
    check(metadata, headers) {
      const carriers: TraceCarrier[] = [metadataCarrier(metadata)];
      if (headers !== undefined) carriers.push(headerCarrier(headers));
      return new RequestSpan(tracer, 'envoy.service.auth.v3.Authorization/Check', parentContext(carriers), {
        'rpc.system': 'grpc',
        'rpc.service': 'envoy.service.auth.v3.Authorization',
        'rpc.method': 'Check',
        'authz.transport': 'grpc',
      });
    },
    subRequest(method, headers) {
      return new RequestSpan(tracer, 'authorize', parentContext([nodeHeaderCarrier(headers)]), {
        // The method the proxy asked with (a closed set for any proxy; anything else reads as _OTHER).
        [ATTR_HTTP_REQUEST_METHOD]: KNOWN_METHODS.has(method) ? method : '_OTHER',
        'authz.transport': 'http',
      });
    },
    keyFetch(endpoint, fetch) {
      return inSpan(tracer.startSpan('fetch keys', { kind: SpanKind.CLIENT, attributes: { 'authz.endpoint': endpoint } }, ROOT_CONTEXT), fetch);
    },
    shutdown(timeoutMs) {
      stopping ??= new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        timer.unref();
        provider.shutdown().then(
          () => {
            clearTimeout(timer);
            resolve();
          },
          () => {
            clearTimeout(timer);
            resolve();
          },
        );
      });
      return stopping;
    },
  };
}

/** Run `work` as `span`: ended when it settles, marked an error (by type only, never the message) when it throws. */
async function inSpan<T>(span: Span, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    span.setStatus({ code: SpanStatusCode.ERROR });
    span.setAttribute(ATTR_ERROR_TYPE, errorType(error));
    throw error;
  } finally {
    span.end();
  }
}

const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'CONNECT', 'TRACE']);

class RequestSpan implements RequestTrace {
  readonly traceId: string | undefined;
  readonly #tracer: Tracer;
  readonly #span: Span;
  /** The context children start in. */
  readonly #context: Context;
  /** Whether the endpoint is told of the trace (see AttemptTrace.traceparent). */
  readonly #announce: boolean;

  constructor(tracer: Tracer, name: string, parent: Context | undefined, attributes: Attributes) {
    this.#tracer = tracer;
    this.#span = tracer.startSpan(name, { kind: SpanKind.SERVER, attributes }, parent ?? ROOT_CONTEXT);
    this.#context = trace.setSpan(parent ?? ROOT_CONTEXT, this.#span);
    const context = this.#span.spanContext();
    const sampled = (context.traceFlags & TraceFlags.SAMPLED) !== 0;
    this.traceId = sampled ? context.traceId : undefined;
    this.#announce = sampled || parent !== undefined;
  }

  introspection(endpoint: string): FlightTrace {
    return new FlightSpan(this.#tracer, this.#context, endpoint, this.#announce);
  }

  lookup<T>(run: () => Promise<T>): Promise<T> {
    return inSpan(this.#tracer.startSpan('shared cache lookup', { kind: SpanKind.CLIENT, attributes: { 'db.system.name': 'redis' } }, this.#context), run);
  }

  end(decision: Decision): void {
    const span = this.#span;
    if (span.isRecording()) {
      const wouldDeny = decision.allow ? decision.wouldDeny : undefined;
      // Configuration names and closed sets only: never a token, a header's value, a subject or a client id.
      span.setAttributes({
        'authz.decision': wouldDeny ? 'would_deny' : decision.allow ? 'allow' : 'deny',
        'authz.reason': wouldDeny?.reason ?? decision.reason,
        'authz.cache': decision.cache,
        [ATTR_HTTP_RESPONSE_STATUS_CODE]: decision.allow ? 200 : decision.status,
      });
      if (decision.policy !== null) span.setAttribute('authz.policy', decision.policy);
      if (decision.endpoint !== null) span.setAttribute('authz.endpoint', decision.endpoint);
      // A deny is an answer, not a failure; only a request we could not decide is one.
      if (!decision.allow && decision.reason === 'policy_error') span.setStatus({ code: SpanStatusCode.ERROR });
    }
    span.end();
  }
}

class FlightSpan implements FlightTrace {
  readonly traceId: string | undefined;
  readonly #tracer: Tracer;
  readonly #span: Span;
  readonly #context: Context;
  readonly #announce: boolean;

  constructor(tracer: Tracer, parent: Context, endpoint: string, announce: boolean) {
    this.#tracer = tracer;
    this.#span = tracer.startSpan('introspect', { kind: SpanKind.INTERNAL, attributes: { 'authz.endpoint': endpoint } }, parent);
    this.#context = trace.setSpan(parent, this.#span);
    const context = this.#span.spanContext();
    this.traceId = (context.traceFlags & TraceFlags.SAMPLED) !== 0 ? context.traceId : undefined;
    this.#announce = announce;
  }

  attempt(method: string, resend: number): AttemptTrace {
    return new AttemptSpan(this.#tracer, this.#context, method, resend, this.#announce);
  }

  end(result: IntrospectionResult | undefined): void {
    outcomeOf(this.#span, result);
    this.#span.end();
  }
}

class AttemptSpan implements AttemptTrace {
  readonly traceparent: string | undefined;
  readonly #span: Span;

  constructor(tracer: Tracer, parent: Context, method: string, resend: number, announce: boolean) {
    const attributes: Attributes = { [ATTR_HTTP_REQUEST_METHOD]: method };
    if (resend > 0) attributes[ATTR_HTTP_REQUEST_RESEND_COUNT] = resend;
    this.#span = tracer.startSpan(method, { kind: SpanKind.CLIENT, attributes }, parent);
    const { traceId, spanId, traceFlags } = this.#span.spanContext();
    this.traceparent = announce ? `00-${traceId}-${spanId}-0${(traceFlags & TraceFlags.SAMPLED).toString(16)}` : undefined;
  }

  status(code: number): void {
    this.#span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, code);
  }

  end(result: IntrospectionResult): void {
    outcomeOf(this.#span, result);
    this.#span.end();
  }
}

/** The outcome of a call (active, inactive, error, ...): a closed set; never its detail, which may quote the endpoint. */
function outcomeOf(span: Span, result: IntrospectionResult | undefined): void {
  const outcome = result?.outcome ?? 'error';
  span.setAttribute('authz.outcome', outcome);
  if (outcome !== 'active' && outcome !== 'inactive') {
    span.setStatus({ code: SpanStatusCode.ERROR });
    span.setAttribute(ATTR_ERROR_TYPE, outcome);
  }
}

/** An error's class name: bounded, and unlike its message never carries request data. */
function errorType(error: unknown): string {
  return error instanceof Error ? error.name : 'unknown';
}

/** The exporter, with failures told to onFailure: the SDK would only pass them to its (silent) diagnostic logger. */
class CountingExporter implements SpanExporter {
  readonly #inner: SpanExporter;
  readonly #onFailure: (error: Error | undefined) => void;

  constructor(inner: SpanExporter, onFailure: (error: Error | undefined) => void) {
    this.#inner = inner;
    this.#onFailure = onFailure;
  }

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.#inner.export(spans, (result) => {
      if (result.code !== ExportResultCode.SUCCESS) {
        try {
          this.#onFailure(result.error);
        } catch {
          // Counting must not stop the processor.
        }
      }
      done(result);
    });
  }

  shutdown(): Promise<void> {
    return this.#inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.#inner.forceFlush?.() ?? Promise.resolve();
  }
}

function exportFailureReporter(options: TracingOptions): (error: Error | undefined) => void {
  let warnedAt = -Infinity;
  let since = 0;
  return (error) => {
    options.onExportFailure?.();
    since += 1;
    const now = Date.now();
    if (now - warnedAt < EXPORT_WARNING_MS) return;
    warnedAt = now;
    options.logger.warn({ failures: since, err: error ? `${error.name}: ${error.message}` : undefined }, 'could not export spans; they are dropped');
    since = 0;
  };
}
