/**
 * Everything a configuration builds for request time: endpoint clients, the
 * cache, compiled policies. One instance per loaded configuration.
 */
import type { AuthRequest } from './auth-request.js';
import type { Config } from './config/load.js';
import { decide, type CompiledPolicy, type DecideContext, type DecisionNote } from './decide.js';
import type { Decision } from './decision.js';
import { IntrospectionCache } from './introspection/cache.js';
import { EndpointClient, type Clock } from './introspection/endpoint-client.js';
import { Introspector, type Answer, type Endpoint } from './introspection/introspector.js';

export interface AuthorizerOptions {
  clock?: Clock;
}

export class Authorizer {
  readonly #clients: EndpointClient[];
  readonly #context: DecideContext;
  readonly introspector: Introspector;
  readonly cache: IntrospectionCache;

  constructor(config: Config, options: AuthorizerOptions = {}) {
    const clock = options.clock ?? Date;
    this.#clients = config.endpoints.map((endpoint) => new EndpointClient(endpoint, clock));
    const byName = new Map(this.#clients.map((client) => [client.name, client]));
    this.cache = new IntrospectionCache({
      maxEntries: config.cache.maxCacheEntries,
      ttlSeconds: config.cache.validatedTokenTTL,
      clock,
    });
    this.introspector = new Introspector(this.cache);

    const policies = new Map<string, CompiledPolicy>();
    for (const policy of config.policies) {
      policies.set(policy.name, {
        config: policy,
        endpoint: byName.get(policy.endpoint)!,
        ownHeaders: new Set([policy.identityHeader]),
      });
    }
    const introspector = this.introspector;
    this.#context = {
      policies,
      defaultPolicy: policies.get(config.defaultPolicy)!,
      policySelector: config.policySelector,
      maxTokenLength: config.server.maxTokenLength,
      introspect(endpoint: Endpoint, token: string, signal: AbortSignal): Promise<Answer> {
        return introspector.introspect(endpoint, token, signal);
      },
    };
  }

  check(request: AuthRequest, signal: AbortSignal, note?: DecisionNote): Promise<Decision> {
    return decide(request, this.#context, signal, note);
  }

  async close(): Promise<void> {
    await Promise.all(this.#clients.map((client) => client.destroy()));
  }
}
