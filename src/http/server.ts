/**
 * The HTTP authorization server: proxies' sub-requests (request.ts) decided
 * by the same Authorizer as gRPC Checks and answered by response.ts. Every
 * sub-request is answered, within server.http.decisionTimeout: an internal
 * failure is a 500 deny, never a hang or a dropped connection, which some
 * proxies would count as an error and others (Envoy's failure_mode_allow) as
 * an allow. GET /healthz answers 200, or 503 while draining, for the proxy's
 * own health checks.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { HttpServerConfig } from '../config/load.js';
import type { DecisionNote } from '../decide.js';
import type { Decision } from '../decision.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { Tracing } from '../observability/tracing.js';
import { CheckDeadline, type CancellableCall } from '../server/check-deadline.js';
import { describe, INTERNAL_ERROR, logDecision, type Runtime } from '../server/authorization-service.js';
import { readSubRequest } from './request.js';
import { renderHttpAnswer } from './response.js';

/** The proxy's route to us is wrong (or a client reached us with a path of its own): never an allow. */
const MISCONFIGURED: Decision = Object.freeze({
  ...INTERNAL_ERROR,
  description: 'the route is not configured correctly',
});

/** How often Node looks for connections past headersTimeout (its default, 30 s, would let a slow client stay 6x longer). */
const CONNECTIONS_CHECKING_INTERVAL_MS = 500;
/** Past the decision timeout, the time a request may still take to be read in full before the connection is cut. */
const REQUEST_TIMEOUT_SLACK_MS = 5_000;

export interface HttpServerOptions {
  runtime: () => Runtime;
  logger: Logger;
  metrics?: Metrics;
  /** undefined: tracing is off. */
  tracing?: Tracing;
  limits: Pick<HttpServerConfig, 'decisionTimeout' | 'maxConnections' | 'headersTimeout' | 'maxHeaderBytes'>;
}

export interface HttpServer {
  readonly port: number;
  /** Stop taking connections; sub-requests under way get until `timeoutMs`, then their connections are cut. */
  shutdown(timeoutMs: number): Promise<void>;
}

export async function startHttpServer(host: string, port: number, options: HttpServerOptions): Promise<HttpServer> {
  const { limits } = options;
  let draining = false;
  let inFlight = 0;
  let idle: (() => void) | null = null;
  const server = createServer(
    {
      connectionsCheckingInterval: CONNECTIONS_CHECKING_INTERVAL_MS,
      headersTimeout: limits.headersTimeout,
      requestTimeout: Math.max(limits.headersTimeout, limits.decisionTimeout) + REQUEST_TIMEOUT_SLACK_MS,
      keepAliveTimeout: 60_000,
      maxHeaderSize: limits.maxHeaderBytes,
    },
    (request, response) => {
      inFlight += 1;
      response.once('close', () => {
        inFlight -= 1;
        if (inFlight === 0) idle?.();
      });
      try {
        handle(request, response, options, () => draining);
      } catch (error) {
        options.logger.error({ err: describe(error) }, 'sub-request handling failed; denying');
        send(response, INTERNAL_ERROR, draining);
      }
    },
  );
  server.maxConnections = limits.maxConnections;
  // Node drops header lines past 2,000 without a word: a client's copy of one of our headers among them would
  // never be listed for removal. maxHeaderBytes bounds the head instead.
  server.maxHeadersCount = 0;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });

  let closing: Promise<void> | undefined;
  return {
    port: (server.address() as AddressInfo).port,
    shutdown(timeoutMs: number): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        draining = true;
        let done = false;
        const finish = () => {
          if (done) return;
          done = true;
          clearTimeout(force);
          server.closeAllConnections();
          resolve();
        };
        const force = setTimeout(finish, timeoutMs);
        // close() stops listening and drops idle keep-alive connections; busy ones answer with Connection: close.
        server.close();
        server.closeIdleConnections();
        if (inFlight === 0) finish();
        else idle = finish;
      });
      return closing;
    },
  };
}

function handle(request: IncomingMessage, response: ServerResponse, options: HttpServerOptions, draining: () => boolean): void {
  const started = performance.now();
  const target = request.url ?? '/';
  if (target === '/healthz' && (request.method === 'GET' || request.method === 'HEAD')) {
    const ok = !draining();
    response.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain', 'cache-control': 'no-store', ...(ok ? {} : { connection: 'close' }) });
    response.end(request.method === 'HEAD' ? undefined : ok ? 'ok\n' : 'draining\n');
    return;
  }
  // Proxies send sub-requests without a body; one that comes anyway is not read, so the connection cannot be reused.
  const hasBody = request.headers['transfer-encoding'] !== undefined || (request.headers['content-length'] ?? '0') !== '0';
  const runtime = options.runtime();
  const trace = options.tracing?.subRequest(request.method ?? 'GET', request.headers);
  const note: DecisionNote = {};
  const sub = readSubRequest(request.method ?? 'GET', target, request.rawHeaders);
  const requestId = sub.ok ? sub.request.requestId : null;
  let answered = false;
  const answer = (decision: Decision) => {
    if (answered) return;
    answered = true;
    deadline.dispose();
    clearTimeout(guard);
    send(response, decision, draining() || hasBody);
    const ms = performance.now() - started;
    options.metrics?.recordDecision(decision, ms / 1000, 'http', trace?.traceId);
    logDecision(options.logger, runtime.log, decision, requestId, note, ms);
    trace?.end(decision);
  };

  const deadline = new CheckDeadline(callOf(response, started, options.limits.decisionTimeout));
  // The pipeline answers by the deadline's signal; this is the last resort should some step not listen to it.
  const guard = setTimeout(() => {
    note.detail = 'the decision was not made in time';
    answer(INTERNAL_ERROR);
  }, options.limits.decisionTimeout + 100);

  if (!sub.ok) {
    note.detail = sub.detail;
    answer(MISCONFIGURED);
    return;
  }
  let pending: Promise<Decision>;
  try {
    pending = runtime.authorizer.check(sub.request, deadline, note, trace);
  } catch (error) {
    pending = Promise.reject(error);
  }
  pending
    .then(answer, (error: unknown) => {
      answer(INTERNAL_ERROR);
      options.logger.error({ err: describe(error), requestId }, 'sub-request failed; denying');
    })
    .catch((error: unknown) => {
      // An answer that could not be written: the connection is cut, which every proxy counts as a deny or an error.
      options.logger.error({ err: describe(error), requestId }, 'could not send the sub-request answer');
      response.destroy();
    });
}

function send(response: ServerResponse, decision: Decision, close: boolean): void {
  if (response.headersSent || response.destroyed) return;
  try {
    write(response, decision, close);
  } catch {
    // writeHead checks every header before sending any: a value it refuses leaves nothing half-sent.
    write(response, INTERNAL_ERROR, close);
  }
}

function write(response: ServerResponse, decision: Decision, close: boolean): void {
  const rendered = renderHttpAnswer(decision);
  const head: string[] = [];
  for (const [name, value] of rendered.headers) head.push(name, value);
  head.push('content-length', String(Buffer.byteLength(rendered.body)));
  if (close) head.push('connection', 'close');
  response.writeHead(rendered.status, head);
  response.end(response.req.method === 'HEAD' ? undefined : rendered.body);
}

/**
 * The deadline of a sub-request seen as a call CheckDeadline can watch: the
 * configured decision timeout from arrival, and "cancelled" when the proxy
 * goes away before the answer.
 */
function callOf(response: ServerResponse, started: number, timeoutMs: number): CancellableCall {
  const deadline = Date.now() - (performance.now() - started) + timeoutMs;
  const gone = () => !response.writableFinished;
  return {
    get cancelled() {
      return response.destroyed && gone();
    },
    getDeadline: () => deadline,
    on(_event: 'cancelled', listener: () => void) {
      response.on('close', () => {
        if (gone()) listener();
      });
    },
    removeListener() {
      // The 'close' listener only aborts a signal nobody waits on once the answer is sent.
    },
  };
}
