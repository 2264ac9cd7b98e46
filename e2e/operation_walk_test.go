package e2e

import (
	"context"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/smithy-go/middleware"
)

// notYetBuilt are the operations of the SDK's Kinesis model that shardlog
// still answers UnknownOperationException: none today. An SDK upgrade that
// adds an operation fails TestEveryOperationAnswers until the operation is
// built (or, while it is being built, listed here). The test also fails when
// a listed operation answers anything else, so the list only says what is
// true.
var notYetBuilt = map[string]bool{}

// sdkOperations lists the operations of the SDK's Kinesis model: the
// methods of *kinesis.Client shaped func(ctx, *XInput, ...func(*Options))
// (*XOutput, error). An SDK upgrade that adds an operation adds it here.
func sdkOperations() []reflect.Method {
	ctxType := reflect.TypeFor[context.Context]()
	optFns := reflect.TypeFor[[]func(*kinesis.Options)]()
	errType := reflect.TypeFor[error]()
	var ops []reflect.Method
	typ := reflect.TypeFor[*kinesis.Client]()
	for i := range typ.NumMethod() {
		m := typ.Method(i)
		ft := m.Type // the receiver is In(0)
		if ft.NumIn() != 4 || !ft.IsVariadic() || ft.In(1) != ctxType || ft.In(3) != optFns || ft.NumOut() != 2 || ft.Out(1) != errType {
			continue
		}
		in := ft.In(2)
		if in.Kind() != reflect.Pointer || in.Elem().Name() != m.Name+"Input" {
			continue
		}
		ops = append(ops, m)
	}
	return ops
}

// withoutClientValidation drops the SDK's check of required members, so
// that an empty input reaches the server, which answers it.
func withoutClientValidation(s *middleware.Stack) error {
	_, _ = s.Initialize.Remove("OperationInputValidation") // absent for operations without required members
	return nil
}

// TestEveryOperationAnswers calls every operation of the SDK's Kinesis
// model, with an empty input, through a real server: each must be answered
// by the operation (success, or its own error for the empty input), never
// UnknownOperationException, except those in notYetBuilt, which must be.
func TestEveryOperationAnswers(t *testing.T) {
	srv := startServer(t, t.TempDir())
	c := srv.client(1)
	ops := sdkOperations()
	if len(ops) < 45 { // v1.56.13's model has 45
		t.Fatalf("found %d operations on *kinesis.Client: the reflection no longer matches the SDK", len(ops))
	}
	seen := map[string]bool{}
	var unknown []string
	for _, m := range ops {
		seen[m.Name] = true
		in := reflect.New(m.Type.In(2).Elem())
		opt := reflect.ValueOf(func(o *kinesis.Options) { o.APIOptions = append(o.APIOptions, withoutClientValidation) })
		out := m.Func.Call([]reflect.Value{reflect.ValueOf(c), reflect.ValueOf(context.Background()), in, opt})
		err, _ := out[1].Interface().(error)
		code := apiErr(err)
		switch {
		case err != nil && code == "":
			t.Errorf("%s: not answered by the server: %v", m.Name, err)
		case code == "UnknownOperationException" && !notYetBuilt[m.Name]:
			unknown = append(unknown, m.Name)
		case code != "UnknownOperationException" && notYetBuilt[m.Name]:
			t.Errorf("%s answers (%v): it is built, so remove it from notYetBuilt", m.Name, err)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		t.Errorf("answered UnknownOperationException: %s", strings.Join(unknown, ", "))
	}
	for name := range notYetBuilt {
		if !seen[name] {
			t.Errorf("notYetBuilt lists %s, which the SDK's model does not have", name)
		}
	}
}
