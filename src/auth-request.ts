/**
 * What the pipeline knows of a request to authorize, independent of the edge
 * (Envoy's gRPC CheckRequest, an HTTP sub-request) that carried it. Header
 * names are lower case; each header line is one value.
 */
export interface AuthRequest {
  readonly headers: ReadonlyMap<string, readonly string[]>;
  /** Trusted per-route settings from Envoy's ExtAuthzPerRoute (never from the client). */
  readonly contextExtensions: ReadonlyMap<string, string>;
  /**
   * A policy named by the proxy's own configuration outside context_extensions
   * (the HTTP edge's sub-request path, /<contract>/<policy>/...), never by
   * anything a client can send. Wins over context_extensions.
   */
  readonly policy?: string;
  readonly method: string;
  readonly host: string;
  readonly path: string;
  /** http or https, as the proxy received the request; absent when the edge does not know it. */
  readonly scheme?: string;
  /**
   * The client's TLS certificate as the proxy that terminated TLS saw it: the
   * URL-encoded PEM of Envoy's attributes.source.certificate
   * (include_peer_certificate). Never from a client-sent header.
   */
  readonly peerCertificate?: string | null;
  /** Envoy's x-request-id, for correlating logs. */
  readonly requestId: string | null;
}

const NONE: readonly string[] = Object.freeze([]);

export function headerValues(request: AuthRequest, name: string): readonly string[] {
  return request.headers.get(name) ?? NONE;
}
