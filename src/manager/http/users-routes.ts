// /v1/whoami (any user) and /v1/users (admin).
import { z } from 'zod';
import type { HttpServer } from '../../http/server.js';
import { TrustlaunchError } from '../../protocol/errors.js';
import { IdSchema } from '../../protocol/messages.js';
import type { ManagerService } from '../service.js';
import { addUser, findUser, listUsers, removeUser } from '../users.js';
import { adminOf, userOf } from './auth.js';
import { UserViewSchema, userView } from './views.js';

const bearer = [{ bearer: [] }];

export function registerUserRoutes(app: HttpServer, service: ManagerService): void {
  app.get('/v1/whoami', { schema: { tags: ['users'], security: bearer, response: { 200: UserViewSchema } } }, async (request) =>
    userView(await userOf(service, request)),
  );

  app.get('/v1/users', { schema: { tags: ['users'], security: bearer, response: { 200: z.strictObject({ users: z.array(UserViewSchema) }) } } }, async (request) => {
    await adminOf(service, request);
    return { users: (await listUsers(service.db)).map(userView) };
  });

  app.post(
    '/v1/users',
    {
      schema: {
        tags: ['users'],
        security: bearer,
        body: z.strictObject({ name: IdSchema, role: z.enum(['admin', 'user']).default('user') }),
        response: { 201: z.strictObject({ user: UserViewSchema, token: z.string() }) },
      },
    },
    async (request, reply) => {
      await adminOf(service, request);
      const { user, token } = await addUser(service.db, request.body.name, request.body.role);
      return reply.code(201).send({ user: userView(user), token });
    },
  );

  app.get('/v1/users/:name', { schema: { tags: ['users'], security: bearer, params: z.strictObject({ name: IdSchema }), response: { 200: UserViewSchema } } }, async (request) => {
    await adminOf(service, request);
    const user = await findUser(service.db, request.params.name);
    if (user === undefined) throw new TrustlaunchError('NOT_FOUND', `no user named ${request.params.name}`);
    return userView(user);
  });

  app.delete('/v1/users/:name', { schema: { tags: ['users'], security: bearer, params: z.strictObject({ name: IdSchema }) } }, async (request, reply) => {
    const admin = await adminOf(service, request);
    await removeUser(service.db, request.params.name, admin);
    return reply.code(204).send();
  });
}
