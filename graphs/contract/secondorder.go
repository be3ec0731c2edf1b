package contract

// Names of second-order graphs (graphs.Differentiate, graphs.DeriveHVP;
// docs/second-order.md): a graph differentiated again takes the cotangent
// of each seeded output o as the input seed.<o> and outputs the gradient of
// Σ_o ⟨seed.<o>, o⟩ with respect to each tensor t as grad2.<t>.
const (
	// SeedPrefix starts the cotangent input of a seeded output o: seed.<o>.
	SeedPrefix = "seed."
	// Grad2Prefix starts the second-pass gradient output of t: grad2.<t>.
	Grad2Prefix = "grad2."
	// KindSecondOrder is the MetaKind of a graph made by differentiating a
	// derived graph again.
	KindSecondOrder = "second-order"
	// MetaSeeds lists a second-order graph's seeded outputs.
	MetaSeeds = MetaPrefix + "seeds"
	// MetaWrt lists the tensors a second-order graph differentiates.
	MetaWrt = MetaPrefix + "wrt"
	// MetaSource is the MetaKind of the graph a second-order graph was
	// made from.
	MetaSource = MetaPrefix + "source"
)

// SeedName returns seed.<o>, the cotangent input of output o.
func SeedName(o string) string { return SeedPrefix + o }

// Grad2Name returns grad2.<t>, the second-pass gradient output of t.
func Grad2Name(t string) string { return Grad2Prefix + t }
