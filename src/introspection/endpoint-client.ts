/**
 * The HTTP side of one introspection endpoint: a bounded undici Pool, client
 * authentication, the RFC 7662 request, and a size-limited read of the answer.
 */
import { createHash } from 'node:crypto';
import { Pool } from 'undici';
import type { EndpointConfig } from '../config/load.js';
import { readIntrospectionResponse, type IntrospectionResult } from './result.js';

export interface Clock {
  now(): number;
}

export class EndpointClient {
  readonly name: string;
  readonly cacheId: string;
  readonly #config: EndpointConfig;
  readonly #pool: Pool;
  readonly #path: string;
  readonly #headers: Record<string, string>;
  /** Form parameters after the token, already encoded: "&token_type_hint=...&client_id=..." */
  readonly #formTail: string;
  readonly #clock: Clock;

  constructor(config: EndpointConfig, clock: Clock = Date) {
    this.name = config.name;
    this.cacheId = `${config.name}\0${fingerprint(config)}`;
    this.#config = config;
    this.#clock = clock;
    const url = new URL(config.url);
    this.#path = url.pathname + url.search;
    this.#pool = new Pool(url.origin, {
      connections: config.maxConnections,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      // The AbortSignal below enforces authenticationTimeout and reports 'timeout';
      // undici's own timers are only a backstop and must not fire first.
      headersTimeout: config.authenticationTimeout + 1000,
      bodyTimeout: config.authenticationTimeout + 1000,
      connect: { timeout: config.authenticationTimeout + 1000 },
    });

    this.#headers = {
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
    };
    let tail = config.tokenTypeHint ? `&token_type_hint=${formEncode(config.tokenTypeHint)}` : '';
    switch (config.authMethod) {
      case 'client_secret_basic': {
        // RFC 6749 section 2.3.1: id and secret are form-encoded before base64.
        const pair = `${formEncode(config.clientId!)}:${formEncode(config.clientSecret!.reveal())}`;
        this.#headers.authorization = `Basic ${Buffer.from(pair).toString('base64')}`;
        break;
      }
      case 'client_secret_post':
        tail += `&client_id=${formEncode(config.clientId!)}&client_secret=${formEncode(config.clientSecret!.reveal())}`;
        break;
      case 'authorization_value':
        this.#headers.authorization = config.authorizationValue!.reveal();
        break;
      case 'none':
        if (config.clientId) tail += `&client_id=${formEncode(config.clientId)}`;
        break;
    }
    this.#formTail = tail;
  }

  /**
   * Ask the endpoint about a token. Never throws: every failure is a result.
   * @param signal aborts the call when the caller is gone or out of time
   */
  async introspect(token: string, signal?: AbortSignal): Promise<IntrospectionResult> {
    const timeout = AbortSignal.timeout(this.#config.authenticationTimeout);
    const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
    try {
      const response = await this.#pool.request({
        method: 'POST',
        path: this.#path,
        headers: this.#headers,
        body: `token=${formEncode(token)}${this.#formTail}`,
        signal: combined,
      });
      const body = await readLimited(response.body, this.#config.maxResponseBytes, response.headers['content-length']);
      if (body === null) {
        return { outcome: 'bad_response', detail: `the answer is larger than ${this.#config.maxResponseBytes} bytes` };
      }
      return readIntrospectionResponse(response.statusCode, body, {
        now: this.#clock.now(),
        clockSkew: this.#config.clockSkew,
      });
    } catch (error) {
      if (combined.aborted) return { outcome: 'timeout', detail: 'no answer in time' };
      return { outcome: 'error', detail: describeError(error) };
    }
  }

  close(): Promise<void> {
    return this.#pool.close();
  }

  /** Abort in-flight requests and close at once. */
  destroy(): Promise<void> {
    return this.#pool.destroy();
  }
}

/**
 * A digest of every setting that shapes an endpoint's answers (where it is, who
 * asks, how the answer is read), secrets included, so a changed secret or URL
 * means a different cache identity. Only the digest is kept.
 */
function fingerprint(config: EndpointConfig): string {
  const shape = JSON.stringify([
    config.url,
    config.authMethod,
    config.clientId,
    config.clientSecret?.reveal() ?? null,
    config.authorizationValue?.reveal() ?? null,
    config.tokenTypeHint,
    config.clockSkew,
  ]);
  return createHash('sha256').update(shape).digest('base64url');
}

/** application/x-www-form-urlencoded encoding of one value. */
function formEncode(value: string): string {
  return encodeURIComponent(value).replace(/%20/g, '+');
}

type Body = AsyncIterable<Buffer> & {
  destroy(error?: Error): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  dump?(): Promise<void>;
};

/**
 * Drop an unread body. undici's body emits 'error' (RequestAbortedError) when
 * destroyed before its end; with nobody listening, that is an uncaught exception.
 */
function discard(body: Body): void {
  body.on('error', () => {});
  body.destroy();
}

/** Read a body up to `limit` bytes; null (and the body destroyed) when it is larger. */
async function readLimited(body: Body, limit: number, contentLength: string | string[] | undefined): Promise<string | null> {
  if (typeof contentLength === 'string' && Number(contentLength) > limit) {
    discard(body);
    return null;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > limit) {
      discard(body);
      return null;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size).toString('utf8');
}

/** A short description of a transport failure; never includes the request (it holds the token). */
function describeError(error: unknown): string {
  const e = error as { code?: unknown; name?: unknown };
  const code = typeof e?.code === 'string' ? e.code : typeof e?.name === 'string' ? e.name : 'unknown error';
  return `request failed: ${code}`;
}
