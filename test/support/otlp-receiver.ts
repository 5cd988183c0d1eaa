/**
 * A small OTLP/HTTP trace receiver on loopback: takes POST /v1/traces with
 * the JSON body the JS exporter sends by default, keeps every raw body (to
 * search for what must never be exported) and the spans flattened. It can
 * answer 500, hang, or stop listening, to show export failures are harmless.
 */
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** '' for a root span. */
  parentSpanId: string;
  name: string;
  /** OTLP SpanKind: 1 internal, 2 server, 3 client. */
  kind: number;
  traceState: string;
  attributes: Record<string, string | number | boolean>;
  /** The resource's service.name. */
  service: string;
}

export type ReceiverMode = 'ok' | 'fail' | 'hang';

export interface OtlpReceiver {
  /** For OTEL_EXPORTER_OTLP_ENDPOINT (the exporter appends /v1/traces). */
  readonly endpoint: string;
  readonly port: number;
  readonly bodies: string[];
  readonly spans: ReceivedSpan[];
  /** Requests received, whatever was answered. */
  readonly posts: number;
  mode(next: ReceiverMode): void;
  /** Resolves once a span matches; rejects after `ms`. */
  waitForSpan(match: (span: ReceivedSpan) => boolean, ms?: number): Promise<ReceivedSpan>;
  close(): Promise<void>;
}

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  boolValue?: boolean;
  doubleValue?: number;
}

interface OtlpBody {
  resourceSpans?: Array<{
    resource?: { attributes?: Array<{ key: string; value: OtlpValue }> };
    scopeSpans?: Array<{
      spans?: Array<{
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        traceState?: string;
        name: string;
        kind: number;
        attributes?: Array<{ key: string; value: OtlpValue }>;
      }>;
    }>;
  }>;
}

function valueOf(value: OtlpValue): string | number | boolean {
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.intValue !== undefined) return Number(value.intValue);
  if (value.boolValue !== undefined) return value.boolValue;
  return value.doubleValue ?? '';
}

function attributesOf(list: Array<{ key: string; value: OtlpValue }> | undefined): Record<string, string | number | boolean> {
  return Object.fromEntries((list ?? []).map(({ key, value }) => [key, valueOf(value)]));
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const bodies: string[] = [];
  const spans: ReceivedSpan[] = [];
  const waiters = new Set<() => void>();
  const hung = new Set<ServerResponse>();
  const sockets = new Set<Socket>();
  let mode: ReceiverMode = 'ok';
  let posts = 0;

  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      posts += 1;
      if (mode === 'hang') {
        hung.add(response);
        return;
      }
      if (mode === 'fail' || request.method !== 'POST' || request.url !== '/v1/traces') {
        response.writeHead(500, { 'content-type': 'application/json' }).end('{}');
        return;
      }
      const text = Buffer.concat(chunks).toString('utf8');
      bodies.push(text);
      const body = JSON.parse(text) as OtlpBody;
      for (const resourceSpans of body.resourceSpans ?? []) {
        const service = String(attributesOf(resourceSpans.resource?.attributes)['service.name'] ?? '');
        for (const scope of resourceSpans.scopeSpans ?? []) {
          for (const span of scope.spans ?? []) {
            spans.push({
              traceId: span.traceId,
              spanId: span.spanId,
              parentSpanId: span.parentSpanId ?? '',
              name: span.name,
              kind: span.kind,
              traceState: span.traceState ?? '',
              attributes: attributesOf(span.attributes),
              service,
            });
          }
        }
      }
      response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      for (const wake of waiters) wake();
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    bodies,
    spans,
    get posts() {
      return posts;
    },
    mode(next) {
      mode = next;
      if (next !== 'hang') {
        for (const response of hung) response.destroy();
        hung.clear();
      }
    },
    waitForSpan(match, ms = 10_000) {
      const found = spans.find(match);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(wake);
          reject(new Error(`no matching span within ${ms} ms (${spans.length} received)`));
        }, ms);
        const wake = () => {
          const span = spans.find(match);
          if (!span) return;
          clearTimeout(timer);
          waiters.delete(wake);
          resolve(span);
        };
        waiters.add(wake);
      });
    },
    close() {
      for (const response of hung) response.destroy();
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
    },
  };
}
