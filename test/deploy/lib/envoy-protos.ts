/**
 * Envoy's own protos (vendored by @grpc/grpc-js-xds), loaded for reading
 * configuration files strictly.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import protobuf from 'protobufjs';
import { ProtoJsonReader, protoRoot } from './proto-json.js';

const require = createRequire(import.meta.url);
const deps = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
const protobufjsDir = dirname(require.resolve('protobufjs/package.json'));

/** envoy-api, googleapis, xds (udpa too), protoc-gen-validate, and protobufjs' google/protobuf. */
export const ENVOY_INCLUDE_DIRS = [
  ...['envoy-api', 'googleapis', 'xds', 'protoc-gen-validate'].map((d) => join(deps, d)),
  protobufjsDir,
];

export const BOOTSTRAP = 'envoy.config.bootstrap.v3.Bootstrap';

/** A reader with envoy.config.bootstrap.v3 loaded; Any types are loaded as they are met. */
export function envoyReader(): { root: protobuf.Root; reader: ProtoJsonReader; bootstrap: protobuf.Type } {
  const root = protoRoot(ENVOY_INCLUDE_DIRS);
  root.loadSync(join(ENVOY_INCLUDE_DIRS[0]!, 'envoy/config/bootstrap/v3/bootstrap.proto'), { keepCase: true });
  root.resolveAll();
  const reader = new ProtoJsonReader(root, ENVOY_INCLUDE_DIRS);
  return { root, reader, bootstrap: root.lookupType(BOOTSTRAP) };
}
