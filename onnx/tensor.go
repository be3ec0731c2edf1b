package onnx

import (
	"encoding/binary"
	"fmt"
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/slatrun/slatrun/onnx/onnxpb"
)

// DType is an ONNX tensor element type.
type DType = onnxpb.TensorProto_DataType

// The element types slatrun uses.
const (
	Float = onnxpb.TensorProto_FLOAT
	Int64 = onnxpb.TensorProto_INT64
	Int32 = onnxpb.TensorProto_INT32
	Bool  = onnxpb.TensorProto_BOOL
)

// FloatTensor returns a float32 TensorProto holding data (stored as raw_data).
func FloatTensor(name string, shape []int64, data []float32) *onnxpb.TensorProto {
	raw := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	return &onnxpb.TensorProto{Name: proto.String(name), Dims: append([]int64(nil), shape...), DataType: proto.Int32(int32(Float)), RawData: raw}
}

// Int64Tensor returns an int64 TensorProto holding data.
func Int64Tensor(name string, shape []int64, data []int64) *onnxpb.TensorProto {
	return &onnxpb.TensorProto{Name: proto.String(name), Dims: append([]int64(nil), shape...), DataType: proto.Int32(int32(Int64)), Int64Data: append([]int64(nil), data...)}
}

// NumElements returns the product of dims (1 for a scalar). It does not
// check for overflow: for dims that are not yet validated use Elements.
func NumElements(dims []int64) int64 {
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	return n
}

// TensorFloats returns the values of a float32 tensor, from raw_data or
// float_data.
func TensorFloats(t *onnxpb.TensorProto) ([]float32, error) {
	if DType(t.GetDataType()) != Float {
		return nil, fmt.Errorf("onnx: tensor %q is %s, not FLOAT", t.GetName(), DType(t.GetDataType()))
	}
	if ExternalData(t) {
		return nil, fmt.Errorf("onnx: %w", externalError(t, ""))
	}
	n, err := Elements(t.GetDims())
	if err != nil {
		return nil, fmt.Errorf("onnx: tensor %q: %w", t.GetName(), err)
	}
	if raw := t.GetRawData(); raw != nil {
		if int64(len(raw)) != 4*n {
			return nil, fmt.Errorf("onnx: tensor %q has %d raw bytes for %d floats", t.GetName(), len(raw), n)
		}
		out := make([]float32, n)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		return out, nil
	}
	if int64(len(t.GetFloatData())) != n {
		return nil, fmt.Errorf("onnx: tensor %q has %d values for shape %v", t.GetName(), len(t.GetFloatData()), t.GetDims())
	}
	return append([]float32(nil), t.GetFloatData()...), nil
}

// TensorInt64s returns the values of an int64 (or int32) tensor.
func TensorInt64s(t *onnxpb.TensorProto) ([]int64, error) {
	if ExternalData(t) {
		return nil, fmt.Errorf("onnx: %w", externalError(t, ""))
	}
	n, err := Elements(t.GetDims())
	if err != nil {
		return nil, fmt.Errorf("onnx: tensor %q: %w", t.GetName(), err)
	}
	switch DType(t.GetDataType()) {
	case Int64:
		if raw := t.GetRawData(); raw != nil {
			if int64(len(raw)) != 8*n {
				return nil, fmt.Errorf("onnx: tensor %q has %d raw bytes for %d int64s", t.GetName(), len(raw), n)
			}
			out := make([]int64, n)
			for i := range out {
				out[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
			}
			return out, nil
		}
		if int64(len(t.GetInt64Data())) != n {
			return nil, fmt.Errorf("onnx: tensor %q has %d values for shape %v", t.GetName(), len(t.GetInt64Data()), t.GetDims())
		}
		return append([]int64(nil), t.GetInt64Data()...), nil
	case Int32:
		if raw := t.GetRawData(); raw != nil {
			if int64(len(raw)) != 4*n {
				return nil, fmt.Errorf("onnx: tensor %q has %d raw bytes for %d int32s", t.GetName(), len(raw), n)
			}
			out := make([]int64, n)
			for i := range out {
				out[i] = int64(int32(binary.LittleEndian.Uint32(raw[4*i:])))
			}
			return out, nil
		}
		if int64(len(t.GetInt32Data())) != n {
			return nil, fmt.Errorf("onnx: tensor %q has %d values for shape %v", t.GetName(), len(t.GetInt32Data()), t.GetDims())
		}
		out := make([]int64, n)
		for i, v := range t.GetInt32Data() {
			out[i] = int64(v)
		}
		return out, nil
	}
	return nil, fmt.Errorf("onnx: tensor %q is %s, not an integer type", t.GetName(), DType(t.GetDataType()))
}

// ValueInfo returns a typed tensor ValueInfoProto; no dims means a scalar. A
// negative dimension is symbolic and named "N" (the batch).
func ValueInfo(name string, t DType, shape ...int64) *onnxpb.ValueInfoProto {
	dims := make([]*onnxpb.TensorShapeProto_Dimension, len(shape))
	for i, d := range shape {
		if d < 0 {
			dims[i] = &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "N"}}
		} else {
			dims[i] = &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}}
		}
	}
	tt := &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(t)), Shape: &onnxpb.TensorShapeProto{Dim: dims}}
	return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: tt}}}
}

// ValueShape returns the element type and dims of a tensor ValueInfoProto;
// symbolic or unknown dimensions are -1. ok is false if the value is not a
// tensor or has no shape.
func ValueShape(v *onnxpb.ValueInfoProto) (t DType, dims []int64, ok bool) {
	tt := v.GetType().GetTensorType()
	if tt == nil {
		return 0, nil, false
	}
	t = DType(tt.GetElemType())
	if tt.Shape == nil {
		return t, nil, false
	}
	for _, d := range tt.GetShape().GetDim() {
		if dv, isVal := d.GetValue().(*onnxpb.TensorShapeProto_Dimension_DimValue); isVal {
			dims = append(dims, dv.DimValue)
		} else {
			dims = append(dims, -1)
		}
	}
	return t, dims, true
}
