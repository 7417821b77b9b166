// Who is calling: the bearer token's user (UNAUTHENTICATED otherwise), and for admin
// endpoints an admin (FORBIDDEN for a plain user — admin endpoints are no secret).
import type { FastifyRequest } from 'fastify';
import { bearerToken } from '../../http/auth.js';
import { TrustlaunchError } from '../../protocol/errors.js';
import type { ManagerService } from '../service.js';
import { authenticate, type User } from '../users.js';

export async function userOf(service: ManagerService, request: FastifyRequest): Promise<User> {
  const user = await authenticate(service.db, bearerToken(request));
  if (user === undefined) throw new TrustlaunchError('UNAUTHENTICATED', 'unknown or revoked token');
  return user;
}

export async function adminOf(service: ManagerService, request: FastifyRequest): Promise<User> {
  const user = await userOf(service, request);
  if (user.role !== 'admin') throw new TrustlaunchError('FORBIDDEN', 'this endpoint is for admins');
  return user;
}
