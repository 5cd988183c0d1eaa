/**
 * Where a request's span hangs: the first valid trace context among the
 * carriers given, in order (the gRPC call's metadata, then the request's
 * headers), W3C trace context first and Zipkin B3 (single `b3` header or
 * `x-b3-*`, Istio's default) second within each. Anything malformed reads as
 * absent: a client's odd header never fails a Check, it only starts a new trace.
 */
import { isSpanContextValid, ROOT_CONTEXT, trace, type Context, type TextMapGetter } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { B3Propagator } from '@opentelemetry/propagator-b3';

/** Every value given under a lower-case name (none: empty). */
export type TraceCarrier = (name: string) => readonly string[];

/** Headers one value of which is one field: a repeat is ambiguous, and ignored whole. */
const SINGLE = new Set(['traceparent', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-sampled', 'x-b3-flags', 'x-b3-parentspanid']);

const getter: TextMapGetter<TraceCarrier> = {
  keys: () => [],
  get(carrier, key) {
    const values = carrier(key);
    if (values.length === 0) return undefined;
    if (values.length > 1 && SINGLE.has(key)) return undefined;
    return values.length === 1 ? values[0] : [...values];
  },
};

const propagators = [new W3CTraceContextPropagator(), new B3Propagator()];

/** The parent context to start a span in, or undefined: none of the carriers holds a valid one. */
export function parentContext(carriers: readonly TraceCarrier[]): Context | undefined {
  for (const carrier of carriers) {
    for (const propagator of propagators) {
      let context: Context;
      try {
        context = propagator.extract(ROOT_CONTEXT, carrier, getter);
      } catch {
        // A client's header must never fail a Check: what cannot be read is not a parent.
        continue;
      }
      const found = trace.getSpanContext(context);
      if (found !== undefined && isSpanContextValid(found)) return context;
    }
  }
  return undefined;
}

/** A grpc-js metadata as a carrier (binary values are never trace context). */
export function metadataCarrier(metadata: { get(key: string): Array<string | Buffer> }): TraceCarrier {
  return (name) => metadata.get(name).filter((value): value is string => typeof value === 'string');
}

/** The pipeline's header map as a carrier. */
export function headerCarrier(headers: ReadonlyMap<string, readonly string[]>): TraceCarrier {
  const none: readonly string[] = [];
  return (name) => headers.get(name) ?? none;
}

/** Node's header object as a carrier (Node joins repeats of unknown headers with ", ", which no parser takes). */
export function nodeHeaderCarrier(headers: Readonly<Record<string, string | string[] | undefined>>): TraceCarrier {
  return (name) => {
    const value = headers[name];
    return value === undefined ? [] : typeof value === 'string' ? [value] : value;
  };
}
