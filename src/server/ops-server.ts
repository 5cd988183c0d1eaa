/**
 * The two HTTP listeners beside the gRPC port. The operations server
 * (server.ops) serves Prometheus metrics, liveness and readiness to whoever the
 * network lets reach it. The admin server (server.admin, loopback by default)
 * serves only the admin route DELETE /cache (cache-admin.ts), the one place
 * that takes a token, to drop cached answers: a scraper's network access never
 * reaches it.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Counter } from 'prom-client';
import type { Logger } from '../observability/logger.js';
import { handleCacheAdmin, type CacheAdmin } from './cache-admin.js';

/** What the ops server needs of the metrics: the Metrics of one process, or a cluster's aggregate. */
export interface OpsMetrics {
  /** Serves /metrics. */
  readonly registry: { readonly contentType: string; metrics(): Promise<string> };
  /** With exemplars (tracing on): the OpenMetrics rendering, served to a scraper that asks for it. */
  readonly exemplars?: boolean;
  openMetrics?(): Promise<string>;
  readonly adminEvictions: Pick<Counter<'scope'>, 'inc'>;
  readonly opsConnectionsRefused: Pick<Counter, 'inc'>;
}

/** Bounds on what an anonymous client can hold on the ops port (server.ops.*). */
export interface OpsLimits {
  /** Most connections open at once; one more is closed as soon as it is accepted. */
  readonly maxConnections: number;
  /** Milliseconds a connection has to send a request's headers before it is closed. */
  readonly headersTimeout: number;
}

/** The longest a whole request may take (headers and body); headersTimeout is at most this. */
export const OPS_REQUEST_TIMEOUT_MS = 10_000;

/**
 * How often Node looks for connections past headersTimeout or the request
 * timeout. Its default (30 s) lets a client that never finishes its headers
 * hold a connection six times longer than headersTimeout says.
 */
const CONNECTIONS_CHECKING_INTERVAL_MS = 500;

export interface OpsServerOptions {
  metrics: OpsMetrics;
  limits: OpsLimits;
  /** null when ready to take Checks, else why not (for the /readyz body). */
  notReady(): string | null;
  logger?: Logger;
}

export interface AdminServerOptions {
  /** The admin route DELETE /cache (see cache-admin.ts); null: no admin token configured now, 404. */
  cacheAdmin(): CacheAdmin | null;
  metrics: Pick<OpsMetrics, 'adminEvictions' | 'opsConnectionsRefused'>;
  /** The same bounds as the ops port's (server.ops.*). */
  limits: OpsLimits;
  logger?: Logger;
}

export interface OpsServer {
  readonly port: number;
  close(): Promise<void>;
}

export function startOpsServer(host: string, port: number, options: OpsServerOptions): Promise<OpsServer> {
  return listen(host, port, options.limits, options.metrics, (request, response) => handle(request, response, options));
}

export function startAdminServer(host: string, port: number, options: AdminServerOptions): Promise<OpsServer> {
  return listen(host, port, options.limits, options.metrics, async (request, response) => {
    if ((request.url ?? '/').split('?')[0] === '/cache') {
      await handleCacheAdmin(request, response, options.cacheAdmin(), options.metrics, options.logger);
    } else {
      send(response, 404, 'text/plain', 'not found\n');
    }
  });
}

type Handler = (request: IncomingMessage, response: ServerResponse) => Promise<void>;

async function listen(
  host: string,
  port: number,
  limits: OpsLimits,
  metrics: Pick<OpsMetrics, 'opsConnectionsRefused'>,
  handler: Handler,
): Promise<OpsServer> {
  const server = createServer(
    {
      connectionsCheckingInterval: CONNECTIONS_CHECKING_INTERVAL_MS,
      headersTimeout: limits.headersTimeout,
      requestTimeout: OPS_REQUEST_TIMEOUT_MS,
      keepAliveTimeout: 5_000,
    },
    (request, response) => {
      handler(request, response).catch(() => {
        if (!response.headersSent) send(response, 500, 'text/plain', 'internal error\n');
        else response.destroy();
      });
    },
  );
  // Past the cap Node closes a new connection at once: the file descriptors the introspection
  // client and Redis need cannot all be taken by clients of this port.
  server.maxConnections = limits.maxConnections;
  server.on('drop', () => metrics.opsConnectionsRefused.inc());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function handle(request: IncomingMessage, response: ServerResponse, options: OpsServerOptions): Promise<void> {
  const path = (request.url ?? '/').split('?')[0];
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    response.setHeader('allow', 'GET, HEAD');
    send(response, 405, 'text/plain', 'method not allowed\n');
    return;
  }
  switch (path) {
    case '/metrics': {
      const metrics = options.metrics;
      // Exemplars exist only in OpenMetrics; without them the Prometheus text format stays, whatever the Accept.
      if (metrics.exemplars && metrics.openMetrics && acceptsOpenMetrics(request.headers.accept)) {
        send(response, 200, OPENMETRICS_CONTENT_TYPE, await metrics.openMetrics());
        return;
      }
      send(response, 200, metrics.registry.contentType, await metrics.registry.metrics());
      return;
    }
    case '/healthz':
      send(response, 200, 'text/plain', 'ok\n');
      return;
    case '/readyz': {
      const reason = options.notReady();
      if (reason === null) send(response, 200, 'text/plain', 'ready\n');
      else send(response, 503, 'text/plain', `not ready: ${reason}\n`);
      return;
    }
    default:
      send(response, 404, 'text/plain', 'not found\n');
  }
}

const OPENMETRICS_CONTENT_TYPE = 'application/openmetrics-text; version=1.0.0; charset=utf-8';

/** Whether the Accept header lists OpenMetrics at a quality above 0 (Prometheus lists it first when it wants exemplars). */
function acceptsOpenMetrics(accept: string | undefined): boolean {
  if (accept === undefined) return false;
  return accept.split(',').some((range) => {
    const [type, ...parameters] = range.split(';').map((part) => part.trim().toLowerCase());
    if (type !== 'application/openmetrics-text') return false;
    const q = parameters.find((parameter) => parameter.startsWith('q='));
    return q === undefined || Number(q.slice(2)) > 0;
  });
}

function send(response: ServerResponse, status: number, contentType: string, body: string): void {
  response.writeHead(status, {
    'content-type': contentType,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  response.end(response.req.method === 'HEAD' ? undefined : body);
}
