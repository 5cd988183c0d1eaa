/**
 * An endpoint of kind jwt: JWT access tokens validated here against the
 * issuer's keys, behind the same Endpoint interface as introspection, so the
 * cache (verified claims kept up to exp), coalescing and policy evaluation are
 * the same. With introspect: always, a token that verifies is then asked about
 * at the introspection url, whose answer decides (revocation counts); a forged
 * one costs no call.
 */
import type { EndpointConfig } from '../config/load.js';
import type { CallerSignal, Endpoint } from '../introspection/introspector.js';
import type { KeySet } from '../introspection/jwks.js';
import type { IntrospectionResult } from '../introspection/result.js';
import { verifyAccessToken, type AccessTokenRules } from './access-token.js';

export interface JwtEndpointOptions {
  cacheId: string;
  keys: KeySet;
  /** Asked after a successful local validation (introspect: always); absent: local validation decides. */
  introspection?: Pick<Endpoint, 'introspect'>;
  clock?: { now(): number };
}

export class JwtEndpoint implements Endpoint {
  readonly name: string;
  readonly cacheId: string;
  readonly clientIdHeader = null;
  readonly issuer: string;
  readonly keys: KeySet;
  readonly #rules: AccessTokenRules;
  readonly #introspection: Pick<Endpoint, 'introspect'> | undefined;
  readonly #clock: { now(): number };

  constructor(config: EndpointConfig, options: JwtEndpointOptions) {
    if (config.kind !== 'jwt' || config.issuer === null) throw new TypeError(`endpoint ${config.name} is not of kind jwt with an issuer`);
    this.name = config.name;
    this.cacheId = options.cacheId;
    this.issuer = config.issuer;
    this.keys = options.keys;
    this.#introspection = options.introspection;
    this.#clock = options.clock ?? Date;
    this.#rules = {
      issuer: config.issuer,
      audience: config.audience,
      algorithms: config.algorithms,
      tokenTypes: config.tokenTypes,
      clockSkew: config.clockSkew,
      multiValuedScope: config.multiValuedScope,
    };
  }

  async introspect(token: string, signal?: CallerSignal): Promise<IntrospectionResult> {
    let local: IntrospectionResult;
    try {
      local = await verifyAccessToken(token, this.keys.getKey, this.#rules, this.#clock.now());
    } catch {
      // No keys at all: the token may be fine, so an error (introspection_error), never inactive.
      return { outcome: 'error', detail: this.keys.lastProblem ?? 'the issuer\'s keys are not loaded' };
    }
    if (local.outcome !== 'active' || this.#introspection === undefined) return local;
    return this.#introspection.introspect(token, signal);
  }
}
