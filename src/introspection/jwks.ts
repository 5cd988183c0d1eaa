/**
 * An issuer's signing keys (JWK Set): found through its metadata or given,
 * fetched with the endpoint's own transport, kept, and fetched again when a
 * token names a key we do not have, at most once per cooldown, so random key
 * ids never turn into a flood of fetches. The last good set stays in use while
 * the issuer cannot be reached.
 */
import { createLocalJWKSet, errors, jwtVerify, type JWTVerifyGetKey, type JWTVerifyOptions, type JWTVerifyResult } from 'jose';
import type { Dispatcher } from 'undici';
import type { EndpointConfig } from '../config/load.js';
import { readLimited } from './endpoint-client.js';
import { createDispatcher } from './transport.js';

/** What the key set needs of HTTP: a JSON document from a URL, or an error. */
export type FetchJson = (url: string) => Promise<unknown>;

export interface KeySetOptions {
  /** The issuer whose keys these are: the metadata must name it exactly (RFC 8414 section 3.3). */
  issuer: string;
  /** null: read jwks_uri from the issuer's metadata. */
  jwksUri: string | null;
  /** Milliseconds between two fetches (and between two attempts of a failing one). */
  cooldown: number;
  /** Milliseconds after which a set in use is fetched again in the background; 0: never. */
  maxAge?: number;
  fetchJson: FetchJson;
  /** May a jwks_uri found in the metadata be fetched (the endpoint's transport rule)? */
  permitted?: (url: URL) => boolean;
  clock?: { now(): number };
  /** Told of every fetch of the key set, and how it went. */
  onFetch?: (result: 'success' | 'failure') => void;
}

/** No key set could be had: the issuer's keys were never fetched. */
export class KeysUnavailableError extends Error {
  readonly code = 'ERR_KEYS_UNAVAILABLE';
}

export class KeySet {
  readonly #options: KeySetOptions;
  readonly #clock: { now(): number };
  #keys: JWTVerifyGetKey | null = null;
  #jwksUri: string | null;
  #attemptedAt = -Infinity;
  #fetchedAt = -Infinity;
  #pending: Promise<boolean> | null = null;
  #retry: NodeJS.Timeout | null = null;
  #closed = false;
  /** Why the last fetch failed (for logs and readiness); null after a success. */
  lastProblem: string | null = null;

  constructor(options: KeySetOptions) {
    this.#options = options;
    this.#clock = options.clock ?? Date;
    this.#jwksUri = options.jwksUri;
  }

  /** True once a key set has been fetched. */
  get loaded(): boolean {
    return this.#keys !== null;
  }

  /** Fetch the keys now unless a fetch is under way or happened within the cooldown; true when a new set came. */
  refresh(): Promise<boolean> {
    if (this.#pending) return this.#pending;
    if (this.#closed || this.#clock.now() - this.#attemptedAt < this.#options.cooldown) return Promise.resolve(false);
    this.#attemptedAt = this.#clock.now();
    const pending = this.#fetch().finally(() => {
      this.#pending = null;
    });
    this.#pending = pending;
    return pending;
  }

  /**
   * The key for a JWS header, as jose's verify functions ask for it. An unknown
   * key id fetches the set again (within the cooldown rule) and looks once more.
   */
  readonly getKey: JWTVerifyGetKey = async (header, token) => {
    if (this.#keys === null) await this.refresh();
    else if (this.#options.maxAge && this.#clock.now() - this.#fetchedAt >= this.#options.maxAge) void this.refresh();
    const keys = this.#keys;
    if (keys === null) throw new KeysUnavailableError(this.lastProblem ?? 'the key set has not been fetched yet');
    try {
      return await keys(header, token);
    } catch (error) {
      if ((error as { code?: unknown }).code !== 'ERR_JWKS_NO_MATCHING_KEY') throw error;
      if (!(await this.refresh())) throw error;
      return this.#keys!(header, token);
    }
  };

  /**
   * Start from the keys another set holds (the one a reload replaces, for the
   * same issuer and source), so a reload neither refetches nor goes unready.
   */
  adopt(previous: KeySet): void {
    if (previous.#keys === null || this.#keys !== null) return;
    this.#keys = previous.#keys;
    this.#jwksUri = previous.#jwksUri;
    this.#fetchedAt = previous.#fetchedAt;
    this.#attemptedAt = previous.#attemptedAt;
  }

  /** Stop retrying in the background. */
  close(): void {
    this.#closed = true;
    if (this.#retry) clearTimeout(this.#retry);
  }

  async #fetch(): Promise<boolean> {
    try {
      this.#jwksUri ??= await this.#discover();
      const jwks = await this.#options.fetchJson(this.#jwksUri);
      // Throws on anything that is not a set of JWKs; private or secret members are refused when used.
      this.#keys = createLocalJWKSet(jwks as Parameters<typeof createLocalJWKSet>[0]);
      this.#fetchedAt = this.#clock.now();
      this.lastProblem = null;
      this.#options.onFetch?.('success');
      return true;
    } catch (error) {
      this.lastProblem = `the key set could not be fetched: ${problemOf(error)}`;
      this.#options.onFetch?.('failure');
      // Never loaded: try again by itself, so readiness does not wait for a token to come.
      if (this.#keys === null && !this.#closed) {
        this.#retry = setTimeout(() => void this.refresh(), Math.max(this.#options.cooldown, 100));
        this.#retry.unref();
      }
      return false;
    }
  }

  /** jwks_uri from RFC 8414 metadata (path after the well-known name), else OpenID discovery (appended). */
  async #discover(): Promise<string> {
    const issuer = new URL(this.#options.issuer);
    const path = issuer.pathname === '/' ? '' : issuer.pathname.replace(/\/$/, '');
    const candidates = [
      `${issuer.origin}/.well-known/oauth-authorization-server${path}`,
      `${issuer.origin}${path}/.well-known/openid-configuration`,
    ];
    let last: unknown;
    for (const url of candidates) {
      let metadata: unknown;
      try {
        metadata = await this.#options.fetchJson(url);
      } catch (error) {
        last = error;
        continue;
      }
      const { issuer: named, jwks_uri: jwksUri } = (metadata ?? {}) as { issuer?: unknown; jwks_uri?: unknown };
      // RFC 8414 section 3.3: metadata for another issuer is not this one's.
      if (named !== this.#options.issuer) throw new Error('the metadata names another issuer');
      if (typeof jwksUri !== 'string') throw new Error('the metadata has no jwks_uri');
      let parsed: URL;
      try {
        parsed = new URL(jwksUri);
      } catch {
        throw new Error('the metadata\'s jwks_uri is not a URL');
      }
      if (!(this.#options.permitted ?? (() => true))(parsed)) throw new Error('the metadata\'s jwks_uri is not https');
      return jwksUri;
    }
    throw new Error(`no metadata (${problemOf(last)})`);
  }
}

/**
 * jose's jwtVerify, and when a token names no kid and several keys of the set
 * fit its alg (two keys of one type while a rotation is under way), each of
 * them in turn: jose leaves that to the caller. Bounded by the set's size.
 */
export async function verifyWithKeySet(token: string, getKey: JWTVerifyGetKey, options: JWTVerifyOptions): Promise<JWTVerifyResult> {
  try {
    return await jwtVerify(token, getKey, options);
  } catch (error) {
    if ((error as { code?: unknown }).code !== 'ERR_JWKS_MULTIPLE_MATCHING_KEYS') throw error;
    for await (const key of error as AsyncIterable<Parameters<typeof jwtVerify>[1]>) {
      try {
        return await jwtVerify(token, key as Exclude<Parameters<typeof jwtVerify>[1], JWTVerifyGetKey>, options);
      } catch (failure) {
        if ((failure as { code?: unknown }).code !== 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED') throw failure;
      }
    }
    throw new errors.JWSSignatureVerificationFailed();
  }
}

function problemOf(error: unknown): string {
  const e = error as { code?: unknown; message?: unknown };
  if (typeof e?.message === 'string' && e.message !== '') return typeof e.code === 'string' ? `${e.code}: ${e.message}` : e.message;
  return typeof e?.code === 'string' ? e.code : 'unknown error';
}

/**
 * JSON over the endpoint's transport (its CA, client certificate, proxy and
 * timeout), one bounded dispatcher per origin asked; no redirects are followed.
 */
export class JsonFetcher {
  readonly #config: EndpointConfig;
  readonly #dispatchers = new Map<string, Dispatcher>();

  constructor(config: EndpointConfig) {
    this.#config = config;
  }

  readonly fetchJson: FetchJson = async (url) => {
    const target = new URL(url);
    let dispatcher = this.#dispatchers.get(target.origin);
    if (!dispatcher) {
      dispatcher = createDispatcher(this.#config, target.origin);
      this.#dispatchers.set(target.origin, dispatcher);
    }
    const response = await dispatcher.request({
      origin: target.origin,
      method: 'GET',
      path: `${target.pathname}${target.search}`,
      headers: { accept: 'application/json, application/jwk-set+json' },
      signal: AbortSignal.timeout(this.#config.authenticationTimeout),
    });
    const body = await readLimited(response.body, this.#config.maxResponseBytes, response.headers['content-length']);
    if (response.statusCode !== 200) throw new Error(`HTTP ${response.statusCode} from ${target.origin}${target.pathname}`);
    if (body === null) throw new Error(`larger than ${this.#config.maxResponseBytes} bytes`);
    return JSON.parse(body) as unknown;
  };

  async close(): Promise<void> {
    await Promise.all([...this.#dispatchers.values()].map((dispatcher) => dispatcher.destroy()));
    this.#dispatchers.clear();
  }
}
