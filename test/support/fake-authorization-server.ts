/**
 * A small, controllable fake RFC 7662 introspection endpoint for tests and
 * demos: it records every request and answers whatever the test tells it to,
 * including the failure modes a real authorization server shows on a bad day
 * (slow headers, a slowly dripped body, a connection reset mid-body, a black
 * hole that never answers, a redirect).
 *
 * It can also go down and come back (`setAvailability`: connections reset or
 * refused), and it counts the requests it is answering at once (`concurrency`).
 *
 * Listens on 127.0.0.1 on an ephemeral port. No test-framework imports here:
 * this module is also compiled by tsc and used from plain Node scripts.
 */
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';

/** One request as the fake server received it. */
export interface FakeRequest {
  method: string;
  /** Path and query of the request line. */
  path: string;
  /** Node's lower-cased header object. */
  headers: IncomingHttpHeaders;
  /** The raw body text. */
  rawBody: string;
  /** The body parsed as application/x-www-form-urlencoded. */
  body: URLSearchParams;
  /** Over TLS with `requestCert`: the subject CN of the verified client certificate, else null. */
  clientCertificate: string | null;
}

export interface FakeServerOptions {
  /** Serve HTTPS with this certificate; `ca` and `requestCert` ask for (and verify) a client certificate. */
  tls?: { cert: string; key: string; ca?: string; requestCert?: boolean };
}

/**
 * What to answer. Every field is optional: `{}` is a 200 with an empty body.
 * `blackHole` and `redirect` take precedence over the rest.
 */
export interface FakeResponse {
  /** HTTP status (default 200, or 302 with `redirect`). */
  status?: number;
  /** Sent as JSON, with content-type application/json unless `headers` says otherwise. */
  json?: unknown;
  /** Sent as is (wins over `json`). */
  body?: string | Buffer;
  /** Extra response headers. */
  headers?: Record<string, string | string[]>;
  /**
   * How the body length is framed: 'content-length' (default), 'chunked'
   * (Transfer-Encoding: chunked, no length) or 'close' (no length; the body
   * ends when the connection closes, as in HTTP/1.0).
   */
  framing?: 'content-length' | 'chunked' | 'close';
  /** Milliseconds to wait before sending the status line and headers. */
  delayMs?: number;
  /** Drip the body: `bytes` at a time, one piece every `intervalMs`. */
  drip?: { bytes: number; intervalMs: number };
  /**
   * Destroy the socket after this many body bytes (the headers still announce
   * the whole body): a connection reset mid-body.
   */
  destroyAfterBytes?: number;
  /** Never answer: keep the request open until the client gives up or close() is called. */
  blackHole?: boolean;
  /** Answer with a redirect to this URL (status 302 unless `status` is a 3xx). */
  redirect?: string;
}

export type FakeHandler = (request: FakeRequest) => FakeResponse | Promise<FakeResponse>;

/**
 * Whether the server takes connections. 'up': as usual. 'reset': every new
 * connection is accepted and at once reset (TCP RST), as by a crashing server
 * or a load balancer without healthy backends. 'refuse': the server stops
 * listening, so connections are refused (ECONNREFUSED), as while it restarts.
 * Going 'reset' or 'refuse' also resets every open connection, answers under
 * way included.
 */
export type Availability = 'up' | 'reset' | 'refuse';

export interface FakeAuthorizationServer {
  /** The introspection endpoint URL, e.g. http://127.0.0.1:PORT/oauth2/introspect */
  url: string;
  /** e.g. http://127.0.0.1:PORT */
  origin: string;
  port: number;
  /** Every request received so far, in order of arrival (recorded once its body is read). */
  requests: FakeRequest[];
  /** Replace the handler for the following requests. */
  respond(handler: FakeHandler): void;
  /** Resolves once `count` requests have arrived; rejects after `timeoutMs`. */
  waitForRequests(count: number, timeoutMs?: number): Promise<void>;
  /** Number of TCP connections accepted so far. */
  connectionCount(): number;
  /** Go down or come back (see Availability); resolves once in effect. */
  setAvailability(mode: Availability): Promise<void>;
  /**
   * Requests being answered now (arrived, answer not yet finished or cut off),
   * and the most at once since the start or the last `resetPeak()`.
   */
  concurrency(): { current: number; peak: number };
  resetPeak(): void;
  /** Stop listening, destroy every open socket at once, cancel pending answers. */
  close(): Promise<void>;
}

export const INTROSPECTION_PATH = '/oauth2/introspect';

/** Largest request body the fake reads; more is answered 413. */
const MAX_REQUEST_BODY = 1024 * 1024;

/**
 * A handler answering by token: a token mapped to claims is active with those
 * claims (`active: true` is added); a token mapped to an object that has an
 * `active` member is answered with that object verbatim (e.g. `{ active: false }`);
 * an unknown token is `{ "active": false }` (RFC 7662 section 2.2).
 */
export function answerByToken(tokens: Record<string, Record<string, unknown>> | Map<string, Record<string, unknown>>): FakeHandler {
  const table = tokens instanceof Map ? tokens : new Map(Object.entries(tokens));
  return (request) => {
    const token = request.body.get('token');
    const entry = token === null ? undefined : table.get(token);
    if (entry === undefined) return { json: { active: false } };
    if (Object.hasOwn(entry, 'active')) return { json: entry };
    return { json: { active: true, ...entry } };
  };
}

const DEFAULT_HANDLER: FakeHandler = () => ({ json: { active: false } });

export async function startFakeAuthorizationServer(
  handler: FakeHandler = DEFAULT_HANDLER,
  options: FakeServerOptions = {},
): Promise<FakeAuthorizationServer> {
  let current = handler;
  let closed = false;
  let connections = 0;
  let availability: Availability = 'up';
  let answering = 0;
  let peak = 0;
  const requests: FakeRequest[] = [];
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const arrivalWaiters = new Set<() => void>();

  const later = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        resolve();
      }, ms);
      timers.add(timer);
    });

  const tls = options.tls;
  const server: Server = tls
    ? createHttpsServer({
        keepAliveTimeout: 5_000,
        cert: tls.cert,
        key: tls.key,
        ...(tls.ca === undefined ? {} : { ca: tls.ca }),
        requestCert: tls.requestCert ?? false,
        rejectUnauthorized: tls.requestCert ?? false,
      })
    : createServer({ keepAliveTimeout: 5_000 });
  // A client refusing our certificate (or sending none) is what some tests are about.
  server.on('tlsClientError', () => {});
  server.on('connection', (socket: Socket) => {
    connections += 1;
    if (availability === 'reset') {
      socket.on('error', () => {});
      socket.resetAndDestroy();
      return;
    }
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    // A client going away mid-answer is expected here, not an error.
    socket.on('error', () => {});
  });

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    res.on('error', () => {});
    answering += 1;
    peak = Math.max(peak, answering);
    res.once('close', () => (answering -= 1));
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_REQUEST_BODY) tooLarge = true;
      else chunks.push(chunk);
    });
    req.on('error', () => {});
    req.on('end', () => {
      if (tooLarge) {
        res.writeHead(413, { connection: 'close' }).end();
        return;
      }
      const rawBody = Buffer.concat(chunks).toString('utf8');
      const peer = tls?.requestCert ? (req.socket as TLSSocket).getPeerCertificate() : null;
      const request: FakeRequest = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        rawBody,
        body: new URLSearchParams(rawBody),
        clientCertificate: typeof peer?.subject?.CN === 'string' ? peer.subject.CN : null,
      };
      requests.push(request);
      for (const wake of arrivalWaiters) wake();
      void answer(request, res).catch(() => {
        if (!res.headersSent && !res.destroyed) res.writeHead(500).end();
        else res.destroy();
      });
    });
  });

  async function answer(request: FakeRequest, res: ServerResponse): Promise<void> {
    const spec = await current(request);
    if (spec.blackHole) return; // close() destroys the socket
    if (spec.delayMs) await later(spec.delayMs);
    if (closed || res.destroyed) return;

    if (spec.redirect !== undefined) {
      const status = spec.status !== undefined && spec.status >= 300 && spec.status < 400 ? spec.status : 302;
      res.writeHead(status, { location: spec.redirect, 'content-length': '0', ...spec.headers }).end();
      return;
    }

    const status = spec.status ?? 200;
    let body: Buffer;
    const headers: Record<string, string | string[]> = {};
    if (spec.body !== undefined) {
      body = Buffer.isBuffer(spec.body) ? spec.body : Buffer.from(spec.body, 'utf8');
    } else if (spec.json !== undefined) {
      body = Buffer.from(JSON.stringify(spec.json), 'utf8');
      headers['content-type'] = 'application/json';
    } else {
      body = Buffer.alloc(0);
    }
    Object.assign(headers, spec.headers);
    const framing = spec.framing ?? 'content-length';
    if (framing === 'content-length') headers['content-length'] = String(body.length);
    if (framing === 'close') {
      // No length and no chunking: Node ends such a body by closing the connection.
      headers.connection = 'close';
      res.useChunkedEncodingByDefault = false;
    }
    res.writeHead(status, headers);
    res.flushHeaders();

    const limit = spec.destroyAfterBytes ?? Infinity;
    const piece = spec.drip ? Math.max(1, spec.drip.bytes) : body.length || 1;
    let sent = 0;
    while (sent < body.length) {
      if (closed || res.destroyed) return;
      if (spec.drip && sent > 0) await later(spec.drip.intervalMs);
      if (closed || res.destroyed) return;
      const end = Math.min(body.length, sent + piece, limit);
      if (end > sent) res.write(body.subarray(sent, end));
      sent = end;
      if (sent >= limit) {
        // Let the bytes leave, then cut the connection without a proper end.
        await later(10);
        res.socket?.destroy();
        return;
      }
    }
    if (limit === 0) {
      res.socket?.destroy();
      return;
    }
    res.end();
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const origin = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;

  return {
    url: `${origin}${INTROSPECTION_PATH}`,
    origin,
    port,
    requests,
    respond(next: FakeHandler): void {
      current = next;
    },
    waitForRequests(count: number, timeoutMs = 2_000): Promise<void> {
      if (requests.length >= count) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const wake = () => {
          if (requests.length < count) return;
          clearTimeout(timer);
          arrivalWaiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(() => {
          arrivalWaiters.delete(wake);
          reject(new Error(`expected ${count} requests within ${timeoutMs} ms, got ${requests.length}`));
        }, timeoutMs);
        arrivalWaiters.add(wake);
      });
    },
    connectionCount: () => connections,
    async setAvailability(mode: Availability): Promise<void> {
      if (closed || mode === availability) return;
      const wasListening = availability !== 'refuse';
      availability = mode;
      if (mode !== 'up') {
        for (const socket of sockets) socket.resetAndDestroy();
      }
      if (mode === 'refuse' && wasListening) {
        // Stop listening now; the callback (after the last connection) is not waited for.
        server.close(() => {});
      } else if (mode !== 'refuse' && !wasListening) {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(port, '127.0.0.1', () => {
            server.off('error', reject);
            resolve();
          });
        });
      }
    },
    concurrency: () => ({ current: answering, peak }),
    resetPeak(): void {
      peak = answering;
    },
    close(): Promise<void> {
      closed = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      const done = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      server.closeAllConnections();
      return done;
    },
  };
}
