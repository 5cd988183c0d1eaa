/**
 * What the pipeline knows of a request to authorize, independent of how Envoy
 * encoded it. Header names are lower case; each header line is one value.
 */
export interface AuthRequest {
  readonly headers: ReadonlyMap<string, readonly string[]>;
  /** Trusted per-route settings from Envoy's ExtAuthzPerRoute (never from the client). */
  readonly contextExtensions: ReadonlyMap<string, string>;
  readonly method: string;
  readonly host: string;
  readonly path: string;
  /** Envoy's x-request-id, for correlating logs. */
  readonly requestId: string | null;
}

const NONE: readonly string[] = Object.freeze([]);

export function headerValues(request: AuthRequest, name: string): readonly string[] {
  return request.headers.get(name) ?? NONE;
}
