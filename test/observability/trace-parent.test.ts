/**
 * Finding a request's parent span: W3C trace context, then B3, in the gRPC
 * metadata before the request's headers; anything malformed reads as absent.
 */
import t from 'tap';
import { trace, type Context } from '@opentelemetry/api';
import { headerCarrier, metadataCarrier, nodeHeaderCarrier, parentContext, type TraceCarrier } from '../../src/observability/trace-parent.js';

const TRACE = '0af7651916cd43dd8448eb211c80319c';
const SPAN = 'b7ad6b7169203331';

function carrier(headers: Record<string, string | string[]>): TraceCarrier {
  return headerCarrier(new Map(Object.entries(headers).map(([name, value]) => [name, Array.isArray(value) ? value : [value]])));
}

function parent(...carriers: TraceCarrier[]): { traceId: string; spanId: string; sampled: boolean; state: string | undefined } | undefined {
  const context: Context | undefined = parentContext(carriers);
  const span = context && trace.getSpanContext(context);
  if (!span) return undefined;
  return { traceId: span.traceId, spanId: span.spanId, sampled: (span.traceFlags & 1) === 1, state: span.traceState?.serialize() };
}

t.test('W3C traceparent and tracestate', async (t) => {
  t.same(parent(carrier({ traceparent: `00-${TRACE}-${SPAN}-01`, tracestate: 'rojo=00f067aa0ba902b7' })), {
    traceId: TRACE,
    spanId: SPAN,
    sampled: true,
    state: 'rojo=00f067aa0ba902b7',
  });
  t.equal(parent(carrier({ traceparent: `00-${TRACE}-${SPAN}-00` }))?.sampled, false, 'not sampled is kept');
  t.equal(parent(carrier({ traceparent: `01-${TRACE}-${SPAN}-01-future` }))?.traceId, TRACE, 'a later version with more fields is read');
});

t.test('malformed or refused traceparent values read as absent', async (t) => {
  for (const value of [
    `ff-${TRACE}-${SPAN}-01`, // version ff is invalid by the spec
    `00-${'0'.repeat(32)}-${SPAN}-01`, // all-zero trace id
    `00-${TRACE}-${'0'.repeat(16)}-01`, // all-zero span id
    `00-${TRACE.toUpperCase()}-${SPAN}-01`, // upper case
    `00-${TRACE}-${SPAN}-01-extra`, // version 00 has exactly four fields
    `00-${TRACE.slice(1)}-${SPAN}-01`,
    `00-${TRACE}-${SPAN}`,
    'garbage',
    '',
  ]) {
    t.equal(parent(carrier({ traceparent: value })), undefined, JSON.stringify(value));
  }
  t.equal(parent(carrier({ traceparent: [`00-${TRACE}-${SPAN}-01`, `00-${TRACE}-${SPAN}-01`] })), undefined, 'repeated: ambiguous, ignored');
  t.equal(parent(carrier({})), undefined, 'none at all');
});

t.test('B3: single header and multiple headers, 64-bit ids widened', async (t) => {
  t.same(parent(carrier({ b3: `${TRACE}-${SPAN}-1` })), { traceId: TRACE, spanId: SPAN, sampled: true, state: undefined });
  t.equal(parent(carrier({ b3: `${TRACE}-${SPAN}-0` }))?.sampled, false);
  t.equal(parent(carrier({ b3: `${TRACE}-${SPAN}-d` }))?.sampled, true, 'debug means sampled');
  t.same(parent(carrier({ 'x-b3-traceid': TRACE, 'x-b3-spanid': SPAN, 'x-b3-sampled': '1' }))?.spanId, SPAN);
  t.equal(parent(carrier({ 'x-b3-traceid': '8448eb211c80319c', 'x-b3-spanid': SPAN, 'x-b3-sampled': '1' }))?.traceId, `${'0'.repeat(16)}8448eb211c80319c`);
  t.equal(parent(carrier({ b3: 'not-b3' })), undefined, 'a malformed single header');
  t.equal(parent(carrier({ 'x-b3-traceid': TRACE })), undefined, 'a trace id without a span id');
  t.equal(parent(carrier({ 'x-b3-traceid': [TRACE, TRACE], 'x-b3-spanid': SPAN })), undefined, 'repeated x-b3-traceid');
  t.equal(parent(carrier({ traceparent: `00-${TRACE}-${SPAN}-01`, b3: `${'1'.repeat(32)}-${'2'.repeat(16)}-1` }))?.traceId, TRACE, 'W3C before B3');
  t.equal(parent(carrier({ traceparent: 'garbage', b3: `${TRACE}-${SPAN}-1` }))?.traceId, TRACE, 'B3 when the W3C one is no good');
});

t.test('the first carrier with a valid context wins', async (t) => {
  const metadata = { get: (key: string) => (key === 'traceparent' ? [`00-${TRACE}-${SPAN}-01`] : []) };
  const headers = carrier({ traceparent: `00-${'1'.repeat(32)}-${'2'.repeat(16)}-01` });
  t.equal(parent(metadataCarrier(metadata), headers)?.traceId, TRACE, 'metadata first');
  const broken = { get: (key: string) => (key === 'traceparent' ? ['garbage'] : []) };
  t.equal(parent(metadataCarrier(broken), headers)?.traceId, '1'.repeat(32), 'the headers when the metadata has nothing valid');
  const binary = { get: (key: string) => (key === 'traceparent' ? [Buffer.from(`00-${TRACE}-${SPAN}-01`)] : []) };
  t.equal(parent(metadataCarrier(binary)), undefined, 'a binary metadata value is not trace context');
  t.equal(parent(nodeHeaderCarrier({ traceparent: `00-${TRACE}-${SPAN}-01, 00-${TRACE}-${SPAN}-01` })), undefined, "Node's joined repeat is refused");
  t.equal(parent(nodeHeaderCarrier({ traceparent: `00-${TRACE}-${SPAN}-01` }))?.spanId, SPAN);
});
