package grpc

import (
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/resilient-go/resilient"
)

// route is what calls to one method of one target share, fixed on the
// method's first call: whether it is safe to repeat, and the executors its
// calls run on (with the target's and the method's breakers, when set).
type route struct {
	idempotent bool
	retry      *resilient.Executor // may hedge: calls safe to repeat
	once       *resilient.Executor // never hedges: calls that are not
	single     *resilient.Executor // one attempt: NoRetry
}

type routeKey struct{ target, method string }

// maxRoutes bounds the routes an Interceptor remembers. Methods and targets
// are written in a program's code, so a program has far fewer; beyond the
// bound, a route is built for each call (correct, but it allocates).
const maxRoutes = 4096

// routes is a copy-on-write map: a lookup is one atomic load and one map
// read, with no lock and no allocation; an insert copies the map under a
// lock, once per route.
type routes struct {
	m  atomic.Pointer[map[routeKey]*route]
	mu sync.Mutex
}

func (ic *Interceptor) route(target, method string) *route {
	key := routeKey{target, method}
	if m := ic.routes.m.Load(); m != nil {
		if r, ok := (*m)[key]; ok {
			return r
		}
	}
	r := ic.newRoute(target, method)
	ic.routes.mu.Lock()
	defer ic.routes.mu.Unlock()
	old := ic.routes.m.Load()
	if old != nil {
		if prev, ok := (*old)[key]; ok {
			return prev
		}
		if len(*old) >= maxRoutes {
			return r
		}
	}
	m := make(map[routeKey]*route, 1+lenOf(old))
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	m[key] = r
	ic.routes.m.Store(&m)
	return r
}

func lenOf(m *map[routeKey]*route) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

func (ic *Interceptor) newRoute(target, method string) *route {
	r := &route{
		idempotent: ic.cfg.idempotent[method] || ic.describedIdempotent(method),
		retry:      ic.retry,
		once:       ic.once,
		single:     ic.single,
	}
	var ps []resilient.Policy
	if ic.cfg.targets != nil {
		ps = append(ps, &keyedBreaker{set: ic.cfg.targets, key: target, table: &ic.cfg.table})
	}
	if ic.cfg.methods != nil {
		ps = append(ps, &keyedBreaker{set: ic.cfg.methods, key: method, table: &ic.cfg.table})
	}
	if len(ps) > 0 {
		// The options are valid (the base executors were built from the
		// same), so New cannot fail here.
		p := resilient.WithPolicy(ps...)
		r.retry = resilient.MustNew(ic.retry, p)
		r.once = resilient.MustNew(ic.once, p)
		r.single = resilient.MustNew(ic.single, p)
	}
	return r
}

// describedIdempotent reports whether the method's descriptor, if one is
// registered, declares it free of side effects or idempotent.
func (ic *Interceptor) describedIdempotent(method string) bool {
	files := ic.cfg.files
	if files == nil || !validMethod(method) {
		return false
	}
	// "/pkg.Service/Method" is the descriptor "pkg.Service.Method".
	name := protoreflect.FullName(strings.Replace(method[1:], "/", ".", 1))
	d, err := files.FindDescriptorByName(name)
	if err != nil {
		return false
	}
	md, ok := d.(protoreflect.MethodDescriptor)
	if !ok {
		return false
	}
	opts, ok := md.Options().(*descriptorpb.MethodOptions)
	if !ok || opts == nil {
		return false
	}
	switch opts.GetIdempotencyLevel() {
	case descriptorpb.MethodOptions_NO_SIDE_EFFECTS, descriptorpb.MethodOptions_IDEMPOTENT:
		return true
	}
	return false
}
