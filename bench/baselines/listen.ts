/** Bind a baseline server on loopback (port 0) and announce it the way the service does. */
import * as grpc from '@grpc/grpc-js';

export async function listen(server: grpc.Server): Promise<void> {
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  process.stdout.write(`${JSON.stringify({ msg: 'serving', grpcPort: port, opsPort: 0 })}\n`);
  const stop = () => server.tryShutdown(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
