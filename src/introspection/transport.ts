/**
 * The connections to one endpoint: an undici Pool with bounded connections and
 * keep-alive, the endpoint's own TLS trust and client certificate, and, when
 * configured, a forward proxy (undici's ProxyAgent, just as bounded).
 * Certificate verification is always on: no setting turns it off.
 */
import { Pool, ProxyAgent, type Dispatcher } from 'undici';
import type { EndpointConfig } from '../config/load.js';

/**
 * @param origin where the dispatcher connects: the endpoint's url by default, or
 *   another origin reached with the same settings (the issuer's key set and metadata)
 */
export function createDispatcher(config: EndpointConfig, origin = new URL(config.url!).origin): Dispatcher {
  const backstop = config.authenticationTimeout + 1000;
  const tls = {
    ...(config.tls.ca === null ? {} : { ca: config.tls.ca }),
    ...(config.tls.cert === null ? {} : { cert: config.tls.cert, key: config.tls.key!.reveal() }),
  };
  const poolOptions = {
    connections: config.maxConnections,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    // The caller's AbortSignal enforces authenticationTimeout and reports 'timeout';
    // undici's own timers are only a backstop and must not fire first.
    headersTimeout: backstop,
    bodyTimeout: backstop,
  };
  if (config.proxy === null) {
    return new Pool(origin, { ...poolOptions, connect: { timeout: backstop, ...tls } });
  }
  return new ProxyAgent({
    uri: config.proxy.url,
    ...(config.proxy.authorization === null ? {} : { token: config.proxy.authorization.reveal() }),
    // https endpoints through a CONNECT tunnel (TLS end to end, verified as without a proxy);
    // http endpoints as absolute-URI requests, as forward proxies expect them.
    proxyTunnel: origin.startsWith('https:'),
    requestTls: { timeout: backstop, ...tls },
    proxyTls: { timeout: backstop },
    // Every pool the agent makes (to the endpoint through the tunnel, or to the proxy) is bounded alike;
    // of the agent's options only `connect` (the tunnel, or the way to the proxy) is the pool's business.
    factory: (poolOrigin: string | URL, options: { connect?: Pool.Options['connect'] }) =>
      new Pool(poolOrigin, { ...poolOptions, connect: options.connect }),
  });
}
