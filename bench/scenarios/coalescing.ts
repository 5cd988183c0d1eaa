/**
 * Coalescing: many concurrent Checks of one token nobody has seen, while the
 * authorization server takes ~50 ms to answer. They must share one
 * introspection call; their latency is that call plus the queueing.
 */
import { randomBytes } from 'node:crypto';
import { bearerToken } from '../check-request.js';
import type { Settings } from '../settings.js';
import type { Idp } from '../support/idp.js';
import { decodeDecision, rawClient, RequestTemplate } from '../support/raw-client.js';
import type { Service } from '../support/service.js';
import { percentile } from '../support/stats.js';

export interface Coalescing {
  concurrent: number;
  delayMs: number;
  /** Introspection calls of each round (each must be 1). */
  callsPerRound: number[];
  /** Milliseconds, over every Check of every round. */
  latency: { p50: number; p99: number; max: number };
}

export async function measureCoalescing(service: Service, idp: Idp, settings: Settings): Promise<Coalescing> {
  const client = rawClient(service.address);
  const template = new RequestTemplate();
  const callsPerRound: number[] = [];
  const times: number[] = [];
  try {
    // Open the connection before timing anything.
    await client.check(template.withToken(bearerToken(`warm-${randomBytes(6).toString('hex')}`)));
    await idp.delay(settings.coalesceDelayMs);
    for (let round = 0; round < settings.coalesceRounds; round += 1) {
      const request = template.withToken(bearerToken(`coalesce-${randomBytes(6).toString('hex')}`));
      await idp.reset();
      const results = await Promise.all(
        Array.from({ length: settings.coalesce }, async () => {
          const start = performance.now();
          const decision = decodeDecision(await client.check(request, 10_000));
          times.push(performance.now() - start);
          return decision.allowed;
        }),
      );
      callsPerRound.push(await idp.count());
      const denied = results.filter((allowed) => !allowed).length;
      if (denied > 0) throw new Error(`coalescing: ${denied} of ${settings.coalesce} Checks denied`);
    }
  } finally {
    await idp.delay(0);
    client.close();
  }
  times.sort((a, b) => a - b);
  return {
    concurrent: settings.coalesce,
    delayMs: settings.coalesceDelayMs,
    callsPerRound,
    latency: { p50: percentile(times, 0.5), p99: percentile(times, 0.99), max: times.at(-1) ?? Number.NaN },
  };
}
