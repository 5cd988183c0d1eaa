/**
 * The admin route of the ops port: DELETE /cache drops one token's cached
 * answers (the token in the body, as JSON {"token": "..."} or a form
 * token=...), or every answer with ?all=true, so a revocation takes effect at
 * once. It exists only when an admin token is configured (else 404), and
 * answers 401 to any request without `Authorization: Bearer <admin token>`.
 * The token to drop is never logged, echoed or counted by value.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Secret } from '../config/secret.js';
import type { SharedEviction } from '../introspection/introspector.js';
import type { Logger } from '../observability/logger.js';
import type { OpsMetrics } from './ops-server.js';

export interface CacheAdmin {
  /** The credential callers must present. */
  readonly token: Secret;
  /**
   * Drop a token's answers at every endpoint; how many endpoints held one
   * (a cluster: the total over its workers), and whether the shared tier took
   * it. Rejects when not every cache could be reached.
   */
  evictToken(token: string): AdminEviction | Promise<AdminEviction>;
  /** Drop every answer; how many there were. */
  evictAll(): AdminEviction | Promise<AdminEviction>;
}

export interface AdminEviction {
  readonly evicted: number;
  /** `pending`: dropped here, but Redis did not take it; other replicas may still answer from their memory until it does. */
  readonly shared: SharedEviction;
}

/** Largest request body read: a token (maxTokenLength is at most 1 MiB) in JSON or form encoding. */
const MAX_BODY = 2 * 1024 * 1024 + 1024;

export async function handleCacheAdmin(
  request: IncomingMessage,
  response: ServerResponse,
  admin: CacheAdmin | null,
  metrics: Pick<OpsMetrics, 'adminEvictions'>,
  logger: Logger | undefined,
): Promise<void> {
  if (admin === null) {
    send(response, 404, { error: 'not_found' });
    return;
  }
  if (!authorized(request.headers.authorization, admin.token)) {
    logger?.warn({ remote: request.socket.remoteAddress }, 'admin request refused: missing or wrong admin token');
    response.setHeader('www-authenticate', 'Bearer realm="admin"');
    send(response, 401, { error: 'unauthorized' });
    return;
  }
  if (request.method !== 'DELETE') {
    response.setHeader('allow', 'DELETE');
    send(response, 405, { error: 'method_not_allowed' });
    return;
  }
  const query = new URL(request.url ?? '/', 'http://ops').searchParams;
  if (query.get('all') === 'true') {
    const done = await evict(response, () => admin.evictAll(), logger);
    if (done === null) return;
    metrics.adminEvictions.inc({ scope: 'all' });
    logger?.info({ scope: 'all', entries: done.evicted, shared: done.shared }, 'cache eviction');
    answer(response, done, logger);
    return;
  }
  const token = await readToken(request);
  if (typeof token !== 'string') {
    send(response, token.status, { error: token.error });
    return;
  }
  const done = await evict(response, () => admin.evictToken(token), logger);
  if (done === null) return;
  metrics.adminEvictions.inc({ scope: 'token' });
  logger?.info({ scope: 'token', endpoints: done.evicted, shared: done.shared }, 'cache eviction');
  answer(response, done, logger);
}

/**
 * 200 when every replica has the eviction; 202 when only this one does for
 * now: Redis did not take it, so other replicas may answer from memory until
 * it is sent again (automatically, once Redis answers).
 */
function answer(response: ServerResponse, done: AdminEviction, logger: Logger | undefined): void {
  if (done.shared !== 'pending') {
    send(response, 200, { evicted: done.evicted });
    return;
  }
  logger?.warn({}, 'cache eviction not taken by Redis: other replicas may still hold the answer until it is sent again');
  send(response, 202, {
    evicted: done.evicted,
    shared: 'pending',
    error_description: 'dropped here; Redis did not take the eviction, it is sent again once Redis answers',
  });
}

/** The eviction's outcome, or null once a 503 has been sent: some cache was not reached, so the caller should retry. */
async function evict(
  response: ServerResponse,
  run: () => AdminEviction | Promise<AdminEviction>,
  logger: Logger | undefined,
): Promise<AdminEviction | null> {
  try {
    return await run();
  } catch (error) {
    logger?.error({ err: (error as Error).message }, 'cache eviction incomplete');
    send(response, 503, { error: 'unavailable', error_description: 'not every cache could be reached; try again' });
    return null;
  }
}

/** Constant time in the value compared: both sides are hashed to equal lengths first. */
function authorized(header: string | undefined, expected: Secret): boolean {
  const match = /^Bearer +(\S+) *$/i.exec(header ?? '');
  const given = createHash('sha256').update(match?.[1] ?? '').digest();
  const wanted = createHash('sha256').update(expected.reveal()).digest();
  return timingSafeEqual(given, wanted) && match !== null;
}

async function readToken(request: IncomingMessage): Promise<string | { status: number; error: string }> {
  const type = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json' && type !== 'application/x-www-form-urlencoded') {
    request.resume();
    return { status: 415, error: 'send the token as application/json {"token": "..."} or a form token=..., or ?all=true' };
  }
  const text = await readBody(request);
  if (text === null) return { status: 413, error: 'the body is too large' };
  let token: unknown;
  if (type === 'application/json') {
    try {
      token = (JSON.parse(text) as { token?: unknown } | null)?.token;
    } catch {
      return { status: 400, error: 'the body is not JSON' };
    }
  } else {
    token = new URLSearchParams(text).get('token');
  }
  if (typeof token !== 'string' || token === '') return { status: 400, error: 'the body names no token' };
  return token;
}

/**
 * The body as text, or null when larger than MAX_BODY. Read to its end either
 * way (the server's requestTimeout bounds that), so the answer can still be sent.
 */
function readBody(request: IncomingMessage): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY) chunks.push(chunk);
    });
    request.on('end', () => resolve(size > MAX_BODY ? null : Buffer.concat(chunks).toString('utf8')));
    request.on('error', reject);
  });
}

function send(response: ServerResponse, status: number, body: object): void {
  const text = `${JSON.stringify(body)}\n`;
  response.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  response.end(text);
}
