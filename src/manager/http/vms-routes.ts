// /v1/vms: a user's own VMs. Another user's VM answers NOT_FOUND, like one that does not
// exist. Receipts are not served here: users fetch them from the CA (DESIGN.md §4.2 step 8).
import { z } from 'zod';
import type { HttpServer } from '../../http/server.js';
import { VmCreateRequestSchema } from '../../protocol/messages.js';
import type { ManagerService } from '../service.js';
import { vmEvents } from '../vms.js';
import { userOf } from './auth.js';
import { VmViewSchema, vmView } from './views.js';

const bearer = [{ bearer: [] }];
/** A VM id or the user's name for it. */
const Ref = z.strictObject({ id: z.string().min(1).max(63) });

export function registerVmRoutes(app: HttpServer, service: ManagerService): void {
  app.post('/v1/vms', { schema: { tags: ['vms'], security: bearer, body: VmCreateRequestSchema, response: { 201: VmViewSchema } } }, async (request, reply) => {
    const user = await userOf(service, request);
    return reply.code(201).send(vmView(await service.createVm(user, request.body)));
  });

  app.get('/v1/vms', { schema: { tags: ['vms'], security: bearer, response: { 200: z.strictObject({ vms: z.array(VmViewSchema) }) } } }, async (request) => {
    const user = await userOf(service, request);
    return { vms: (await service.listVms(user)).map((vm) => vmView(vm)) };
  });

  app.get('/v1/vms/:id', { schema: { tags: ['vms'], security: bearer, params: Ref, response: { 200: VmViewSchema } } }, async (request) => {
    const user = await userOf(service, request);
    const vm = await service.getVm(user, request.params.id);
    return vmView(vm, await vmEvents(service.db, vm.id));
  });

  app.post('/v1/vms/:id/stop', { schema: { tags: ['vms'], security: bearer, params: Ref, response: { 202: VmViewSchema } } }, async (request, reply) => {
    const user = await userOf(service, request);
    return reply.code(202).send(vmView(await service.stopVm(user, request.params.id)));
  });

  app.delete('/v1/vms/:id', { schema: { tags: ['vms'], security: bearer, params: Ref } }, async (request, reply) => {
    const user = await userOf(service, request);
    await service.deleteVm(user, request.params.id);
    return reply.code(204).send();
  });
}
