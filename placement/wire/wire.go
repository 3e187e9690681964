// Package wire converts the placement table and its members to and from
// their protobuf form, the one the placement service and silos exchange.
package wire

import (
	"fmt"

	"github.com/granaryhq/granary/placement/membership"
	"github.com/granaryhq/granary/placement/table"
	pb "github.com/granaryhq/granary/proto/placement"
)

// MemberToProto converts m.
func MemberToProto(m table.Member) *pb.Member {
	return &pb.Member{Id: m.ID, Incarnation: m.Incarnation, InternalAddr: m.InternalAddr,
		HttpAddr: m.HTTPAddr, Types: m.Types, AppIds: m.AppIDs}
}

// MemberFromProto converts m; a nil m is the zero Member.
func MemberFromProto(m *pb.Member) table.Member {
	if m == nil {
		return table.Member{}
	}
	return table.Member{ID: m.GetId(), Incarnation: m.GetIncarnation(), InternalAddr: m.GetInternalAddr(),
		HTTPAddr: m.GetHttpAddr(), Types: m.GetTypes(), AppIDs: m.GetAppIds()}.Normalize()
}

// TableToProto converts t.
func TableToProto(t *table.Table) *pb.Table {
	out := &pb.Table{ClusterId: t.ClusterID, Version: t.Version, Members: make([]*pb.Member, len(t.Members))}
	for i, m := range t.Members {
		out.Members[i] = MemberToProto(m)
	}
	return out
}

// TableFromProto converts t, with points virtual points per silo.
func TableFromProto(t *pb.Table, points int) (*table.Table, error) {
	if t == nil {
		return nil, fmt.Errorf("wire: missing table")
	}
	ms := make([]table.Member, len(t.GetMembers()))
	for i, m := range t.GetMembers() {
		ms[i] = MemberFromProto(m)
	}
	return table.New(t.GetClusterId(), t.GetVersion(), ms, points)
}

// PhaseToProto converts p.
func PhaseToProto(p membership.Phase) pb.Phase {
	switch p {
	case membership.PhaseLock:
		return pb.Phase_PHASE_LOCK
	case membership.PhaseUpdate:
		return pb.Phase_PHASE_UPDATE
	case membership.PhaseUnlock:
		return pb.Phase_PHASE_UNLOCK
	}
	return pb.Phase_PHASE_UNSPECIFIED
}

// PhaseFromProto converts p; an unknown phase is an error.
func PhaseFromProto(p pb.Phase) (membership.Phase, error) {
	switch p {
	case pb.Phase_PHASE_LOCK:
		return membership.PhaseLock, nil
	case pb.Phase_PHASE_UPDATE:
		return membership.PhaseUpdate, nil
	case pb.Phase_PHASE_UNLOCK:
		return membership.PhaseUnlock, nil
	}
	return 0, fmt.Errorf("wire: unknown phase %v", p)
}
